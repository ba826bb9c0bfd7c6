"""The LSTM layer's fast training path, for gate matrices whose products are those of one dense
array (dense, and pruned, whose W holds zeros off its mask). `dkp/core/lstm.py` is the readable
reference, the equations alone; `FastLSTMLayer` below is that layer with the choice of path added,
and the model's layers are FastLSTMLayers. `tests/test_lstm.py` checks that both paths give the
same outputs and gradients in float64, for every structure.

The reference multiplies [x_t, h_(t-1)] by W at every step. Split W's columns, W = [W_x | W_h]:

    z_t = x_t @ W_x.T + h_(t-1) @ W_h.T + b

The first term does not depend on the recurrence, so for a window it is one product of all T*B
rows, (TB, in) @ (in, 4H), instead of T small ones; only h_(t-1) @ W_h.T stays in the loop, and
the loop writes into buffers allocated once per window (no concatenation, no temporaries). The cell's
elementwise equations, the same as the reference's (`dkp.core.cell`), take one Numba call per step
(`dkp.kernels.cell`) instead of some twenty NumPy passes. Backward mirrors it: only dz_t @ W_h (the
gradient reaching h_(t-1)) is per step; the input gradient dZ @ W_x and the parameter gradient
dZ.T @ [X, H_prev] are one product each.

The recurrent product h_(t-1) @ W_h.T reads W_h (W's last H columns) in place, through a strided
view. At batch > 1 BLAS runs it somewhat faster on a transposed contiguous copy of W_h, but making
that copy (a transposing pass over its 4H x H entries) costs more than one product, so the copy is
made, per window, only for windows with enough rows to repay it (`transposed_recurrent_weight`): a
training window makes it; one step of inference does not, and costs about its products alone. The
copy is not kept across windows: the optimizers update W in place, so a kept copy would need a
check that W has not changed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dkp.core.cell import incoming_state_gradients
from dkp.core.lstm import LSTMLayer
from dkp.kernels import cell

# The recurrent products' transposed copy of W_h is made for windows of at least this many rows of
# h (T * B, with B > 1; see `transposed_recurrent_weight`). Measured on a 2-core x86 machine, float32,
# one BLAS thread, under load (noisy), the forward alone, copy against view at B = 10 and 20: the
# copy pays from about 150-300 rows at H = 200 and 350-700 at H = 650. The training windows of every
# config (T * B = 400 or 700) make it; evaluation's (batch 10: 200 or 350 rows, where copy and view
# measured within 3% of each other), one step (T = 1) and batch 1 at any T (a matrix-vector product
# runs as fast on the view) do not.
TRANSPOSE_MIN_ROWS = 400


class FastLSTMLayer(LSTMLayer):
    """`LSTMLayer` with the fast path of this module when W's products are those of one dense array
    (`dense_array(W)` is not None) and `fast` is True; otherwise, or with `fast = False`, the
    reference's own forward and backward. Same constructor, parameters and outputs."""

    def __init__(self, W, b, input_size, hidden_size):
        super().__init__(W, b, input_size, hidden_size)
        self.fast = True  # False: always the reference path (dkp/core/lstm.py)

    def forward(self, x, state):
        Wd = dense_array(self.W) if self.fast else None
        if Wd is None:
            return super().forward(x, state)
        return forward(self, x, state, Wd)

    def backward(self, dhs, cache, dstate=None):
        if isinstance(cache, WindowCache):       # the forward took the fast path
            return backward(self, dhs, cache, dstate, dense_array(self.W))
        return super().backward(dhs, cache, dstate)


def dense_array(W):
    """The (m, n) array whose products are W's, or None for a structured matrix (reference path)."""
    products = getattr(W, "dense_products", None)
    return None if products is None else products()


@dataclass
class WindowCache:
    """What the fast backward keeps of one window."""
    x: np.ndarray        # (T, B, in) the layer's input
    h0: np.ndarray       # (B, H) the state the window started from
    c0: np.ndarray
    hs: np.ndarray       # (T, B, H) h_t
    cs: np.ndarray       # (T, B, H) c_t
    acts: np.ndarray     # (T, B, 4H) i, f, g, o after their nonlinearities
    tc: np.ndarray       # (T, B, H) tanh(c_t)

    def previous(self, seq, first):
        """(T, B, H): the value at t - 1 of each step, `first` at t = 0."""
        return np.concatenate([first[None], seq[:-1]])


def forward(layer, x, state, Wd):
    """Over x (T, B, in) from state (h0, c0): (hs, (hT, cT), WindowCache). Wd: layer.W's dense array."""
    T, B, n_in = x.shape
    H = layer.hidden_size
    h0, c0 = state
    acts = x.reshape(T * B, n_in) @ Wd[:, :n_in].T            # (TB, 4H): every step's input term at once
    acts += layer.b
    acts = acts.reshape(T, B, 4 * H)
    Wh_t = transposed_recurrent_weight(Wd, n_in, T, B)        # (H, 4H)
    hs, cs, tc = (np.empty((T, B, H), acts.dtype) for _ in range(3))
    rec = np.empty((B, 4 * H), acts.dtype)                    # h_(t-1) @ W_h.T
    h = np.ascontiguousarray(h0, acts.dtype)
    c = np.ascontiguousarray(c0, acts.dtype)
    for t in range(T):
        np.matmul(h, Wh_t, out=rec)
        cell.cell_forward(acts[t], rec, c, cs[t], tc[t], hs[t])   # acts[t] becomes the activations
        h, c = hs[t], cs[t]
    return hs, (h.copy(), c.copy()), WindowCache(x, h0, c0, hs, cs, acts, tc)


def transposed_recurrent_weight(Wd, n_in, T, B):
    """W_h.T (H, 4H) for the recurrent products h_(t-1) @ W_h.T of a window of T steps at batch B:
    a transposed contiguous copy when B > 1 and T * B >= TRANSPOSE_MIN_ROWS, else a strided view of
    Wd (no copy). BLAS computes the same product from either; the copy's layout runs it faster at
    batch > 1, not at batch 1 (a matrix-vector product streams W_h either way)."""
    Wh_t = Wd[:, n_in:].T                                     # (H, 4H) view, strides (1, n_in + H)
    return np.ascontiguousarray(Wh_t) if B > 1 and T * B >= TRANSPOSE_MIN_ROWS else Wh_t


def backward(layer, dhs, cache, dstate, Wd):
    """The reference's `LSTMLayer.backward` for a WindowCache: (dx, grads, (dh0, dc0))."""
    T, B, H = dhs.shape
    n_in = layer.input_size
    Wh = np.ascontiguousarray(Wd[:, n_in:])                   # (4H, H), once per window
    c_prev = cache.previous(cache.cs, cache.c0)               # (T, B, H)
    dz_all = np.empty((T, B, 4 * H), dhs.dtype)
    dh_in, dc_in = incoming_state_gradients(dstate, B, H, dhs.dtype)
    dh_next = np.array(dh_in, dhs.dtype, order="C")           # (B, H) buffers the loop overwrites
    dc_next = np.array(dc_in, dhs.dtype, order="C")
    dhs = np.ascontiguousarray(dhs)
    for t in reversed(range(T)):
        cell.cell_backward(dhs[t], dh_next, dc_next, cache.acts[t], c_prev[t], cache.tc[t], dz_all[t])
        np.matmul(dz_all[t], Wh, out=dh_next)                 # (B, H): the only product in the loop
    dz_flat = dz_all.reshape(T * B, 4 * H)
    dx = (dz_flat @ Wd[:, :n_in]).reshape(T, B, n_in)
    h_prev = cache.previous(cache.hs, cache.h0)
    xh = np.concatenate([cache.x.reshape(T * B, n_in), h_prev.reshape(T * B, H)], axis=1)  # (TB, in + H)
    grads = layer.W.backward_params(dz_flat, (xh,))
    grads["b"] = dz_all.sum(axis=(0, 1))
    return dx, grads, (dh_next, dc_next)
