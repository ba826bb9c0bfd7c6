"""The LSTM cell's elementwise equations, shared by the layer's reference path (dkp/core/lstm.py)
and its fast path (dkp/core/lstm_fast.py). Gate blocks in the order i, f, g, o, each (B, H)."""
from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 0.5 * (np.tanh(0.5 * z) + 1.0)  # stable for large |z|, one transcendental call


def incoming_state_gradients(dstate, batch, hidden, dtype):
    """(dh, dc) flowing into a window's last state from beyond it: `dstate`, or zeros when None
    (truncated BPTT carries the state across windows but not its gradient)."""
    if dstate is None:
        return np.zeros((batch, hidden), dtype), np.zeros((batch, hidden), dtype)
    return dstate


def step_backward(dz, dh, dc_next, i, f, g, o, c_prev, tc):
    """One step of BPTT through the cell: given dh = dL/dh_t (all of it) and dc_next, the part of
    dL/dc_t coming from step t + 1, fill dz (B, 4H) and return dL/dc_t."""
    dc = dc_next + dh * o * (1.0 - tc * tc)
    gate_gradients(dz, dh, dc, i, f, g, o, c_prev, tc)
    return dc


def gate_gradients(dz, dh, dc, i, f, g, o, c_prev, tc):
    """Fill dz (B, 4H) with the gradient of the gate pre-activations z, given dh = dL/dh_t and
    dc = dL/dc_t (the total, through h_t included), for c_t = f c_(t-1) + i g, h_t = o tanh(c_t)."""
    H = i.shape[1]
    dz[:, :H] = dc * g * i * (1.0 - i)               # input gate
    dz[:, H:2 * H] = dc * c_prev * f * (1.0 - f)     # forget gate
    dz[:, 2 * H:3 * H] = dc * i * (1.0 - g * g)      # candidate
    dz[:, 3 * H:] = dh * tc * o * (1.0 - o)          # output gate
    return dz
