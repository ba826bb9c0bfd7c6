"""The LSTM layer's fast training path, for gate matrices whose products are those of one dense
array (dense, and pruned, whose W holds zeros off its mask). `dkp/core/lstm.py` is the readable
reference and picks this path by itself; `tests/test_lstm.py` checks that both give the same
outputs and gradients in float64, for every structure.

The reference multiplies [x_t, h_(t-1)] by W at every step. Split W's columns, W = [W_x | W_h]:

    z_t = x_t @ W_x.T + h_(t-1) @ W_h.T + b

The first term does not depend on the recurrence, so for a window it is one product of all T*B
rows, (TB, in) @ (in, 4H), instead of T small ones; only h_(t-1) @ W_h.T stays in the loop, and
the loop writes into buffers allocated once per window (no concatenation, no temporaries). The cell's
elementwise equations, the same as the reference's (`dkp.core.cell`), take one Numba call per step
(`dkp.kernels.cell`) instead of some twenty NumPy passes. Backward mirrors it: only dz_t @ W_h (the
gradient reaching h_(t-1)) is per step; the input gradient dZ @ W_x and the parameter gradient
dZ.T @ [X, H_prev] are one product each.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dkp.core.cell import incoming_state_gradients
from dkp.kernels import cell


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
    Wh_t = np.ascontiguousarray(Wd[:, n_in:].T)               # (H, 4H), once per window
    hs, cs, tc = (np.empty((T, B, H), acts.dtype) for _ in range(3))
    rec = np.empty((B, 4 * H), acts.dtype)                    # h_(t-1) @ W_h.T
    h = np.ascontiguousarray(h0, acts.dtype)
    c = np.ascontiguousarray(c0, acts.dtype)
    for t in range(T):
        np.matmul(h, Wh_t, out=rec)
        cell.cell_forward(acts[t], rec, c, cs[t], tc[t], hs[t])   # acts[t] becomes the activations
        h, c = hs[t], cs[t]
    return hs, (h.copy(), c.copy()), WindowCache(x, h0, c0, hs, cs, acts, tc)


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
