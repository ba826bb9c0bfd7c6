"""A matrix stored in CSR form (values on a fixed pattern), and the magnitude selection shared by
pruning and doping."""
from __future__ import annotations

import numpy as np

from dkp.core.checks import check_matrix_shape
from dkp.core.weights.base import GateMatrix
from dkp.kernels import sparse


def n_keep(density, size):
    """Entries kept at `density` of `size`: round(density * size), at least one."""
    return max(1, int(round(density * size)))


def largest(values, k):
    """Sorted indices of the k entries of largest magnitude (ties broken arbitrarily but
    deterministically); O(size) selection, so it is cheap enough to call every step."""
    values = np.asarray(values).reshape(-1)
    if k >= values.size:
        return np.arange(values.size)
    return np.sort(np.argpartition(-np.abs(values), k - 1)[:k])


def csr_from_flat(flat, shape):
    """indptr (m+1,) and indices (nnz,) int32 of sorted flat positions in an (m, n) matrix."""
    m, n = shape
    rows, cols = np.divmod(np.asarray(flat, np.int64), n)
    return sparse.csr_indptr(rows, m), cols.astype(np.int32)


def csr_rows(indptr):
    """Row index of every stored entry: (nnz,)."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def csr_nbytes(nnz, m, itemsize):
    """Bytes of a CSR matrix: values, int32 column indices and int32 row pointers."""
    return int(nnz * itemsize + nnz * 4 + (m + 1) * 4)


class Sparse(GateMatrix):
    """W (m, n) stored as CSR: params {"W": values (nnz,)} on a fixed pattern (indptr, indices).

    The form a pruned matrix takes for fine-tuning with a frozen mask and for inference
    (`Pruned.to_sparse()`): products use the Numba CSR kernels, gradients exist on the pattern only.
    """

    def __init__(self, indptr, indices, values, shape):
        m, n = check_matrix_shape(shape)
        indptr, indices, values = (np.asarray(a) for a in (indptr, indices, values))
        if indptr.shape != (m + 1,) or indices.shape != values.shape or indices.ndim != 1:
            raise ValueError(f"CSR arrays must be indptr (m+1,) = ({m + 1},), indices (nnz,), values (nnz,), "
                             f"got {indptr.shape}, {indices.shape}, {values.shape}")
        if indptr[-1] != len(indices) or (len(indices) and (indices.min() < 0 or indices.max() >= n)):
            raise ValueError(f"CSR arrays are inconsistent with a {m}x{n} matrix")
        self.shape = (m, n)
        self.indptr, self.indices = indptr.astype(np.int32), indices.astype(np.int32)
        self.params = {"W": values}

    @classmethod
    def from_dense(cls, W, mask=None):
        """The non-zeros of W, or W's entries at `mask` (zeros included)."""
        indptr, indices, values = sparse.csr_from_dense(np.asarray(W), mask)
        return cls(indptr, indices, values, W.shape)

    @property
    def nnz(self):
        return len(self.indices)

    @property
    def n_bytes(self):
        return csr_nbytes(self.nnz, self.shape[0], self.dtype.itemsize)

    @property
    def buffers(self):
        return {"indptr": self.indptr, "indices": self.indices}

    def load_buffers(self, buffers):
        self.indptr, self.indices = buffers["indptr"].astype(np.int32), buffers["indices"].astype(np.int32)
        if self.params["W"].shape != self.indices.shape:
            self.params["W"] = np.zeros(self.indices.shape, self.dtype)

    def _apply(self, x):
        return sparse.csr_matmul(self.indptr, self.indices, self.params["W"], x, self.shape[0])

    def _apply_t(self, dy):
        return sparse.csr_matmul_t(self.indptr, self.indices, self.params["W"], dy, self.shape[1])

    def backward_params(self, dy, cache):
        (x,) = cache
        return {"W": sparse.csr_grad(self.indptr, self.indices, x, dy)}

    def to_dense(self):
        return sparse.csr_to_dense(self.indptr, self.indices, self.params["W"], self.shape)
