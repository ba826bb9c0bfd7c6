"""Magnitude pruning: a dense W with a binary mask (Zhu & Gupta's gradual pruning)."""
from __future__ import annotations

import numpy as np

from dkp.core.checks import check_fraction, check_matrix_shape
from dkp.core.weights.base import DenseProducts, GateMatrix
from dkp.core.weights.sparse import Sparse, csr_nbytes, largest


class Pruned(DenseProducts, GateMatrix):
    """W (m, n) dense in memory, with a boolean mask (m, n): entries off the mask are kept at zero and
    get no gradient. `set_sparsity` prunes by magnitude (call it on a schedule, see
    `dkp.compression.schedules.cubic_schedule`); `to_sparse` gives the CSR form for inference.

    n_params counts the kept entries; n_bytes counts them in CSR form (values, int32 column
    indices, int32 row pointers), which is what inference stores.
    """

    def __init__(self, W, mask=None):
        W = np.array(W)
        if W.ndim != 2 or W.dtype.kind != "f":
            raise ValueError(f"W must be a 2-D floating matrix, got shape {W.shape} and dtype {W.dtype}")
        self.shape = W.shape
        self.mask = np.ones(W.shape, bool) if mask is None else np.asarray(mask, bool)
        if self.mask.shape != W.shape:
            raise ValueError(f"mask must have W's shape {W.shape}, got {self.mask.shape}")
        W *= self.mask
        self.params = {"W": W}
        self._nnz = int(self.mask.sum())

    @classmethod
    def init(cls, shape, rng=None, scale=0.05, dtype=np.float32):
        """Dense U(-scale, scale) start, mask all ones (sparsity 0)."""
        m, n = check_matrix_shape(shape)
        rng = np.random.default_rng() if rng is None else rng
        return cls(rng.uniform(-scale, scale, (m, n)).astype(dtype))

    @property
    def sparsity(self):
        return 1.0 - self._nnz / self.mask.size

    def set_sparsity(self, sparsity):
        """Keep the round((1 - sparsity) * m * n) entries of largest magnitude (at least one), zero the
        rest. Returns the new boolean mask (an optimizer may zero its state off the mask)."""
        s = check_fraction(sparsity, "sparsity")
        W = self.params["W"]
        k = max(1, int(round((1.0 - s) * W.size)))
        mask = np.zeros(W.size, bool)
        mask[largest(W, k)] = True
        self.mask = mask.reshape(W.shape)
        self._nnz = k
        W *= self.mask
        return self.mask

    def begin_batch(self, rng):
        self.after_update()  # an optimizer with momentum moves masked weights: put them back to zero

    def after_update(self):
        np.multiply(self.params["W"], self.mask, out=self.params["W"])

    @property
    def n_params(self):
        return self._nnz

    @property
    def n_bytes(self):
        return csr_nbytes(self._nnz, self.shape[0], self.dtype.itemsize)

    @property
    def buffers(self):
        return {"mask": self.mask}

    def load_buffers(self, buffers):
        mask = np.asarray(buffers["mask"], bool)
        if mask.shape != self.shape:
            raise ValueError(f"buffer 'mask' must have shape {self.shape}, got {mask.shape}")
        self.mask, self._nnz = mask, int(mask.sum())

    def backward_params(self, dy, cache):
        g = super().backward_params(dy, cache)                # {"W": (m, n)}
        g["W"] *= self.mask
        return g

    def rows_backward(self, ids, de):
        g = super().rows_backward(ids, de)
        g["W"] *= self.mask
        return g

    def to_dense(self):
        return self.params["W"] * self.mask

    def to_sparse(self):
        """The CSR matrix of the kept entries (for fine-tuning with the mask frozen, and inference)."""
        return Sparse.from_dense(self.to_dense(), self.mask)
