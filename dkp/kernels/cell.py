"""Training kernels for the LSTM cell's elementwise equations, one call per step, each beside its NumPy
reference. The fast training path (`dkp.core.lstm_fast`) calls them between its per-step products;
the equations are those of `dkp.core.cell` (gate blocks i, f, g, o, each (B, H)):

    forward    i, f, o = sigmoid(z_i, z_f, z_o), g = tanh(z_g), sigmoid(v) = (tanh(v/2) + 1)/2
               c_t = f c_(t-1) + i g,   h_t = o tanh(c_t)
    backward   dc = dc_(t+1) f_(t+1) + dh o (1 - tanh(c_t)^2)
               dz_i = dc g i (1 - i),  dz_f = dc c_(t-1) f (1 - f),
               dz_g = dc i (1 - g^2),  dz_o = dh tanh(c_t) o (1 - o)

In NumPy each line is a pass over a (B, H) array, with a temporary, about twenty per step; here one
call does a few passes over each batch row while it sits in cache, with no temporaries. The arithmetic is the reference's, operation for
operation and in the same order (no fastmath), so float64 agrees with it to rounding of tanh alone.
In float32 tanh is `_tanh_fast` (|error| < 3e-7, a vectorisable rational function) instead of libm's
scalar tanhf, whose call per element would cost more than NumPy's vectorised passes save.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from dkp.kernels.step import _tanh_fast


@njit(cache=True, error_model="numpy", inline="always")
def _tanh(x, fast):
    return _tanh_fast(x) if fast else np.tanh(x)


@njit(cache=True, error_model="numpy")
def _sigmoid_add(z, r, fast):
    """z <- sigmoid(z + r) over a row (n,)."""
    half = z.dtype.type(0.5)
    one = z.dtype.type(1.0)
    for k in range(z.shape[0]):
        z[k] = half * (_tanh(half * (z[k] + r[k]), fast) + one)


@njit(cache=True, error_model="numpy")
def _tanh_add(z, r, fast):
    """z <- tanh(z + r) over a row (n,)."""
    for k in range(z.shape[0]):
        z[k] = _tanh(z[k] + r[k], fast)


@njit(cache=True, error_model="numpy")
def _cell_forward(z, rec, c_prev, c_out, tc_out, h_out, fast):
    """z (B, 4H) += rec, then z <- the gates' activations; c_out, tc_out, h_out (B, H) <- c_t,
    tanh(c_t), h_t. c_prev (B, H) is c_(t-1). Each loop touches few arrays, so that LLVM vectorises
    it (with more, it gives up on proving they do not overlap)."""
    B, H = c_prev.shape
    for b in range(B):
        zb, rb = z[b], rec[b]
        _sigmoid_add(zb[:2 * H], rb[:2 * H], fast)                  # i, f
        _tanh_add(zb[2 * H:3 * H], rb[2 * H:3 * H], fast)           # g
        _sigmoid_add(zb[3 * H:], rb[3 * H:], fast)                  # o
        _cell_state(zb[:H], zb[H:2 * H], zb[2 * H:3 * H], c_prev[b], c_out[b], tc_out[b], fast)
        _hidden(zb[3 * H:], tc_out[b], h_out[b])


@njit(cache=True, error_model="numpy")
def _cell_state(i, f, g, c_prev, c_out, tc_out, fast):
    """c_t = f c_(t-1) + i g and tanh(c_t), over a row (H,)."""
    for u in range(c_prev.shape[0]):
        c = f[u] * c_prev[u] + i[u] * g[u]
        c_out[u] = c
        tc_out[u] = _tanh(c, fast)


@njit(cache=True, error_model="numpy")
def _hidden(o, tc, h_out):
    for u in range(tc.shape[0]):
        h_out[u] = o[u] * tc[u]


@njit(cache=True, error_model="numpy")
def _cell_backward(dh_out, dh_next, dc_next, acts, c_prev, tc, dz):
    """dz (B, 4H) <- the gradient of the gate pre-activations at step t, given dh_out = dL/dh_t from
    above, dh_next = dL/dh_t through step t + 1 and dc_next = dL/dc_t through step t + 1 (all (B, H));
    in place, dh_next <- dL/dh_t (all of it) and dc_next <- dL/dc_(t-1) through this step. acts
    (B, 4H): the step's activations. Four passes over each row, each over few arrays (see above)."""
    B, H = c_prev.shape
    for b in range(B):
        a, d = acts[b], dz[b]
        i, f, g, o = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
        dh, dc = dh_next[b], dc_next[b]
        _total_gradients(dh_out[b], dh, dc, o, tc[b])
        _output_gate(d[3 * H:], dh, tc[b], o)
        _input_and_candidate(d[:H], d[2 * H:3 * H], dc, i, g)
        _forget_gate(d[H:2 * H], dc, c_prev[b], f)


@njit(cache=True, error_model="numpy")
def _total_gradients(dh_out, dh, dc, o, tc):
    """dh <- dh_out + dh (dL/dh_t); dc <- dc + dh o (1 - tanh(c_t)^2) (dL/dc_t)."""
    one = dc.dtype.type(1.0)
    for u in range(dc.shape[0]):
        v = dh_out[u] + dh[u]
        dh[u] = v
        dc[u] = dc[u] + v * o[u] * (one - tc[u] * tc[u])


@njit(cache=True, error_model="numpy")
def _output_gate(d_o, dh, tc, o):
    one = d_o.dtype.type(1.0)
    for u in range(d_o.shape[0]):
        d_o[u] = dh[u] * tc[u] * o[u] * (one - o[u])


@njit(cache=True, error_model="numpy")
def _input_and_candidate(d_i, d_g, dc, i, g):
    one = d_i.dtype.type(1.0)
    for u in range(d_i.shape[0]):
        d_i[u] = dc[u] * g[u] * i[u] * (one - i[u])
        d_g[u] = dc[u] * i[u] * (one - g[u] * g[u])


@njit(cache=True, error_model="numpy")
def _forget_gate(d_f, dc, c_prev, f):
    """dz_f = dc c_(t-1) f (1 - f); dc <- dc f, what reaches c_(t-1)."""
    one = d_f.dtype.type(1.0)
    for u in range(d_f.shape[0]):
        d_f[u] = dc[u] * c_prev[u] * f[u] * (one - f[u])
        dc[u] = dc[u] * f[u]


def _fast_tanh(dtype):
    return np.dtype(dtype) == np.float32


def cell_forward(z, rec, c_prev, c_out, tc_out, h_out):
    """One step of the cell in place (see `_cell_forward`); every array C-contiguous, one dtype."""
    _cell_forward(z, rec, c_prev, c_out, tc_out, h_out, _fast_tanh(z.dtype))


def cell_backward(dh_out, dh_next, dc_next, acts, c_prev, tc, dz):
    """One step of BPTT through the cell in place (see `_cell_backward`)."""
    _cell_backward(dh_out, dh_next, dc_next, acts, c_prev, tc, dz)


def _sigmoid_ref(v):
    return 0.5 * (np.tanh(0.5 * v) + 1.0)


def cell_forward_ref(z, c_prev):
    """(activations (B, 4H), c_t, tanh(c_t), h_t) for pre-activations z, in NumPy."""
    H = c_prev.shape[1]
    i, f, o = _sigmoid_ref(z[:, :H]), _sigmoid_ref(z[:, H:2 * H]), _sigmoid_ref(z[:, 3 * H:])
    g = np.tanh(z[:, 2 * H:3 * H])
    c = f * c_prev + i * g
    tc = np.tanh(c)
    return np.concatenate([i, f, g, o], axis=1), c, tc, o * tc


def cell_backward_ref(dh_out, dh_next, dc_next, acts, c_prev, tc):
    """(dz (B, 4H), dL/dc_(t-1) through this step) in NumPy."""
    H = c_prev.shape[1]
    i, f, g, o = acts[:, :H], acts[:, H:2 * H], acts[:, 2 * H:3 * H], acts[:, 3 * H:]
    dh = dh_out + dh_next
    dc = dc_next + dh * o * (1.0 - tc * tc)
    dz = np.concatenate([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g),
                         dh * tc * o * (1.0 - o)], axis=1)
    return dz, dc * f
