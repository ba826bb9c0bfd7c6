"""One LSTM layer: forward over a window with a cache, and hand-written backpropagation through time.

At each step t, with xh = [x_t, h_(t-1)] of shape (B, in + H):

    z = xh @ W.T + b                      (B, 4H), gate blocks in the order i, f, g, o
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);   g = tanh(z_g)
    c_t = f * c_(t-1) + i * g
    h_t = o * tanh(c_t)

W is any gate matrix (see `dkp.core.weights`): the layer only calls its forward / backward_input /
backward_params, so Kronecker, low-rank or doped matrices slot in without touching this file.

This file is the reference: the equations, step by step, and nothing else. The model's layers are
`dkp.core.lstm_fast.FastLSTMLayer`, this layer with a faster path for gate matrices whose products
are those of one dense array (dense, pruned): the same numbers, with the input half of every step's
product done once per window. Setting its `fast = False` makes it run this file's code.
"""
from __future__ import annotations

import numpy as np

from dkp.core.cell import incoming_state_gradients, sigmoid, step_backward
from dkp.core.weights import stack_caches


class LSTMLayer:
    def __init__(self, W, b, input_size, hidden_size):
        H = hidden_size
        if W.shape != (4 * H, input_size + H):
            raise ValueError(f"W must have shape (4 * hidden_size, input_size + hidden_size) = "
                             f"({4 * H}, {input_size + H}), got {W.shape}")
        if b.shape != (4 * H,):
            raise ValueError(f"b must have shape ({4 * H},), got {b.shape}")
        self.W, self.b = W, b
        self.input_size, self.hidden_size = input_size, hidden_size

    @property
    def params(self):
        return {**self.W.params, "b": self.b}

    def zero_state(self, batch, dtype):
        H = self.hidden_size
        return np.zeros((batch, H), dtype), np.zeros((batch, H), dtype)

    def forward(self, x, state):
        """x: (T, B, in), state: (h0, c0) each (B, H) -> hs (T, B, H), (hT, cT), cache."""
        T, B, _ = x.shape
        H = self.hidden_size
        h, c = state
        hs = np.empty((T, B, H), x.dtype)
        steps = []
        for t in range(T):
            xh = np.concatenate([x[t], h], axis=1)           # (B, in + H)
            z, wcache = self.W.forward(xh)                   # (B, 4H)
            z += self.b
            a = sigmoid(z)                                   # i, f, o read from here
            g = np.tanh(z[:, 2 * H:3 * H])                   # (B, H)
            i, f, o = a[:, :H], a[:, H:2 * H], a[:, 3 * H:]
            c_prev = c
            c = f * c_prev + i * g
            tc = np.tanh(c)
            h = o * tc
            hs[t] = h
            steps.append((wcache, i, f, g, o, c_prev, tc))
        return hs, (h, c), steps

    def backward(self, dhs, steps, dstate=None):
        """dhs: (T, B, H) gradient of the loss wrt each h_t -> dx (T, B, in), grads, (dh0, dc0).

        `dstate` is the gradient flowing into the final (hT, cT) from beyond the window: None for
        truncated BPTT, where the state is carried across windows but its gradient is not.
        """
        T, B, H = dhs.shape
        n_in = self.input_size
        dx = np.empty((T, B, n_in), dhs.dtype)
        dz_all = np.empty((T, B, 4 * H), dhs.dtype)
        dh_next, dc_next = incoming_state_gradients(dstate, B, H, dhs.dtype)
        for t in reversed(range(T)):
            wcache, i, f, g, o, c_prev, tc = steps[t]
            dh = dhs[t] + dh_next
            dz = dz_all[t]                                   # (B, 4H) view, filled in place
            dc = step_backward(dz, dh, dc_next, i, f, g, o, c_prev, tc)   # dL/dc_t
            dxh = self.W.backward_input(dz, wcache)          # (B, in + H)
            dx[t] = dxh[:, :n_in]
            dh_next = dxh[:, n_in:]
            dc_next = dc * f
        # W is linear and acts row by row: one call over all T*B rows gives the summed gradient.
        grads = self.W.backward_params(dz_all.reshape(T * B, 4 * H), stack_caches([s[0] for s in steps]))
        grads["b"] = dz_all.sum(axis=(0, 1))
        return dx, grads, (dh_next, dc_next)
