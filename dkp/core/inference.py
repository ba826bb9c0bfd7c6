"""Inference helpers: one LSTM timestep with the gate product and the cell fused in one Numba call.

Training goes through the model's layers (`dkp.core.lstm_fast.FastLSTMLayer`), which build a cache
for backpropagation; for structured matrices (Kronecker, doped, low rank, hybrid) they run the
reference `dkp.core.lstm.LSTMLayer.forward`, about ten NumPy calls per step (concatenate, the gate
product, bias, sigmoid, tanh, products). At batch 1 those calls cost microseconds each, as much as
the whole Kronecker product. `LSTMStep` packs a layer's weights once and runs a step as

    h, c = step(x, (h, c))        # x (b, in), h and c (b, H) -> the new (h, c)

with the same result as `LSTMLayer.forward` on one step (up to float rounding):

  * Kronecker and doped Kronecker matrices (W = sum_k A[k] kron B[k] + S, S in CSR), at batch
    <= `max_fused_batch`: one call of `fused.kron_lstm_step` does [x, h], the Kronecker product
    in the cheaper order, S's gather-dots, the bias and the cell, with A and B copied once to
    row-major (the layout its dot-product loops want; training keeps them transposed);
  * any other gate matrix, or a larger batch: the gate product through the matrix's own
    `forward` (BLAS for dense), then the cell in one Numba call (`fused.lstm_cell`).

The packed weights are a snapshot: build a new `LSTMStep` after the weights change. Doped matrices
are evaluated as at inference, W = structured + S with no co-matrix dropout (S switched off with
`s_enabled = False` is left out).
"""
from __future__ import annotations

import numpy as np

from dkp.core.weights import Dense, Doped, Kronecker
from dkp.kernels import arith
from dkp.kernels import step as fused

# The fused kernel handles a batch row by row (A is read once per row, S's gather-dots are scalar);
# above this batch the unfused path (BLAS Kronecker product over the whole batch, the batched CSR
# kernel, then the Numba cell) takes over. Measured on a 2-core x86 machine, float32, H = 650,
# 2600 x 1300 at 25x, one step (noisy, under load): fused / unfused at batch 8, KP 71 / 85 us and
# doped KP 1% 161 / 206 us; at batch 20, KP 177 / 200 us but doped KP 398 / 346 us.
FUSED_MAX_BATCH = 8


def kron_parts(W):
    """(Kronecker, Doped or None) when W is a Kronecker matrix or a doped one, else (None, None)."""
    if isinstance(W, Kronecker):
        return W, None
    if isinstance(W, Doped) and isinstance(W.structured, Kronecker):
        return W.structured, (W if W.s_enabled else None)
    return None, None


def _rows(a, dtype):
    """a as a C-contiguous array of `dtype` (no copy when it already is one)."""
    return a if a.dtype == dtype and a.flags.c_contiguous else np.ascontiguousarray(a, dtype)


class LSTMStep:
    """One-step inference for an `LSTMLayer` (see the module docstring)."""

    def __init__(self, layer, max_fused_batch=FUSED_MAX_BATCH):
        self.layer = layer
        self.max_fused_batch = int(max_fused_batch)
        W = layer.W
        self.bias = np.ascontiguousarray(layer.b, dtype=W.dtype)
        kron, doped = kron_parts(W)
        self.fused = kron is not None
        if self.fused:
            A, B = kron.params["A"], kron.params["B"]
            self.A, self.B = np.ascontiguousarray(A), np.ascontiguousarray(B)   # row-major copies
            (m1, n1), (m2, n2) = kron.factors
            self.b_first = arith.kron_b_first(m1, n1, m2, n2)
            m = W.shape[0]
            if doped is not None and doped.nnz:
                self.indptr = doped.indptr.astype(np.uint32)
                self.indices = doped.indices.astype(np.uint32)
                self.values = np.ascontiguousarray(doped.params["S"])
            else:
                self.indptr = np.zeros(m + 1, np.uint32)
                self.indices = np.zeros(0, np.uint32)
                self.values = np.zeros(0, W.dtype)
            self.fast_tanh = W.dtype == np.float32
        self.kind = "fused kron" if self.fused else ("dense" if isinstance(W, Dense) else "generic")

    def gates(self, x, h):
        """z = [x, h] @ W.T + b (b, 4H) by the matrix's own product (the unfused path)."""
        xh = np.concatenate((x, h), axis=1)
        W = self.layer.W
        if isinstance(W, Dense):
            z = xh @ W.params["W"].T
        elif isinstance(W, Doped):
            training, W.training = W.training, False   # inference: no co-matrix dropout
            try:
                z = W.forward(xh)[0]
            finally:
                W.training = training
        else:
            z = W.forward(xh)[0]
        z += self.bias
        return z

    def __call__(self, x, state, out=None):
        """(h, c) after one step from `state` = (h, c); `out` = (h_out, c_out) to write into."""
        dtype = self.bias.dtype
        h, c = state
        x, h, c = _rows(x, dtype), _rows(h, dtype), _rows(c, dtype)
        if out is None:
            out = (np.empty_like(c), np.empty_like(c))
        if self.fused and x.shape[0] <= self.max_fused_batch:
            fused.kron_lstm_step_packed(self.A, self.B, self.indptr, self.indices, self.values, self.bias,
                                        x, h, c, out[0], out[1], self.b_first, self.fast_tanh)
            return out
        return fused.lstm_cell(self.gates(x, h), c, out)

    def sequence(self, xs, state):
        """Run the steps xs (T, b, in) from `state`: (hs (T, b, H), (hT, cT))."""
        h, c = state
        hs = np.empty((xs.shape[0],) + h.shape, h.dtype)
        for t in range(xs.shape[0]):
            h, c = self(xs[t], (h, c))
            hs[t] = h
        return hs, (h, c)
