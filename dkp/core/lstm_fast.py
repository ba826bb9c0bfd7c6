"""The LSTM layer's fast training path, for gate matrices whose products are those of one dense
array (dense, and pruned, whose W holds zeros off its mask). `dkp/core/lstm.py` is the readable
reference and picks this path by itself; `tests/test_lstm.py` checks that both give the same
outputs and gradients in float64, for every structure.

The reference multiplies [x_t, h_(t-1)] by W at every step. Split W's columns, W = [W_x | W_h]:

    z_t = x_t @ W_x.T + h_(t-1) @ W_h.T + b

The first term does not depend on the recurrence, so for a window it is one product of all T*B
rows, (TB, in) @ (in, 4H), instead of T small ones; only h_(t-1) @ W_h.T stays in the loop, and
the loop writes into buffers allocated once per window (no concatenation, no temporaries but one
(B, H) product). Backward mirrors it: only dz_t @ W_h (the gradient reaching h_(t-1)) is per step;
the input gradient dZ @ W_x and the parameter gradient dZ.T @ [X, H_prev] are one product each.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dkp.core.cell import incoming_state_gradients, step_backward


def dense_array(W):
    """The (m, n) array whose products are W's, or None for a structured matrix (reference path)."""
    products = getattr(W, "dense_products", None)
    return None if products is None else products()


def _sigmoid_(z):
    """z <- sigmoid(z) in place, as the reference's 0.5 * (tanh(0.5 z) + 1)."""
    z *= 0.5
    np.tanh(z, out=z)
    z += 1.0
    z *= 0.5


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
    ig = np.empty((B, H), acts.dtype)                         # i * g
    h, c = h0, c0
    for t in range(T):
        z = acts[t]                                           # (B, 4H), becomes the activations
        np.matmul(h, Wh_t, out=rec)
        z += rec
        _sigmoid_(z[:, :2 * H])                               # i, f
        np.tanh(z[:, 2 * H:3 * H], out=z[:, 2 * H:3 * H])     # g
        _sigmoid_(z[:, 3 * H:])                               # o
        i, f, g, o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
        np.multiply(f, c, out=cs[t])                          # c_t = f * c_(t-1) + i * g
        np.multiply(i, g, out=ig)
        cs[t] += ig
        np.tanh(cs[t], out=tc[t])
        np.multiply(o, tc[t], out=hs[t])                      # h_t = o * tanh(c_t)
        h, c = hs[t], cs[t]
    return hs, (h.copy(), c.copy()), WindowCache(x, h0, c0, hs, cs, acts, tc)


def backward(layer, dhs, cache, dstate, Wd):
    """The reference's `LSTMLayer.backward` for a WindowCache: (dx, grads, (dh0, dc0))."""
    T, B, H = dhs.shape
    n_in = layer.input_size
    Wh = np.ascontiguousarray(Wd[:, n_in:])                   # (4H, H), once per window
    c_prev = cache.previous(cache.cs, cache.c0)               # (T, B, H)
    dz_all = np.empty((T, B, 4 * H), dhs.dtype)
    dh_next, dc_next = incoming_state_gradients(dstate, B, H, dhs.dtype)
    for t in reversed(range(T)):
        a = cache.acts[t]
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        tc = cache.tc[t]
        dh = dhs[t] + dh_next
        dz = dz_all[t]
        dc = step_backward(dz, dh, dc_next, i, f, g, o, c_prev[t], tc)
        dh_next = dz @ Wh                                     # (B, H): the only product in the loop
        dc_next = dc * f
    dz_flat = dz_all.reshape(T * B, 4 * H)
    dx = (dz_flat @ Wd[:, :n_in]).reshape(T, B, n_in)
    h_prev = cache.previous(cache.hs, cache.h0)
    xh = np.concatenate([cache.x.reshape(T * B, n_in), h_prev.reshape(T * B, H)], axis=1)  # (TB, in + H)
    grads = layer.W.backward_params(dz_flat, (xh,))
    grads["b"] = dz_all.sum(axis=(0, 1))
    return dx, grads, (dh_next, dc_next)
