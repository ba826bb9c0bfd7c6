"""Kronecker-product gate matrix: W = sum_k A[k] kron B[k] (rank r; r = 1 is the plain KP)."""
from __future__ import annotations

import numpy as np

from dkp.core.checks import check_matrix_shape
from dkp.core.weights.base import GateMatrix, product_init_bound
from dkp.kernels import kron
from dkp.kernels import step as fused


def check_factors(shape, factors):
    """Validate factor shapes ((m1, n1), (m2, n2)) against the matrix shape (m, n): m = m1*m2,
    n = n1*n2. Accepts anything with a `.factors` attribute (a `shapes.KronShape`). Returns ints."""
    m, n = check_matrix_shape(shape)
    factors = getattr(factors, "factors", factors)
    try:
        (m1, n1), (m2, n2) = ((int(a), int(b)) for a, b in factors)
    except (TypeError, ValueError):
        raise ValueError(f"factors must be ((m1, n1), (m2, n2)), the shapes of A and B, got {factors!r}") from None
    if min(m1, n1, m2, n2) <= 0:
        raise ValueError(f"factors must have positive sides, got {factors!r}")
    if m1 * m2 != m or n1 * n2 != n:
        raise ValueError(f"factors A {m1}x{n1} and B {m2}x{n2} make a {m1 * m2}x{n1 * n2} Kronecker "
                         f"product, but the matrix shape is {m}x{n}: need m1*m2 = {m} and n1*n2 = {n}")
    return (m1, n1), (m2, n2)


def _stored_transposed(F):
    """(r, p, q) -> the same values as a transposed view of a contiguous (r, q, p) array: the layout
    the Numba forward kernel reads without copying (see `dkp.kernels`)."""
    return np.ascontiguousarray(F.transpose(0, 2, 1)).transpose(0, 2, 1)


class Kronecker(GateMatrix):
    """W = sum_{k<r} A[k] kron B[k], A (r, m1, n1), B (r, m2, n2), W (m1*m2, n1*n2).

    Never built densely: y = x @ W.T is computed as A @ X @ B.T on X = x.reshape(b, n1, n2), in the
    cheaper multiplication order. Storage r*(m1*n1 + m2*n2) numbers.

    params["A"] and params["B"] have the shapes above but are stored transposed in memory (views
    of contiguous (r, n1, m1) and (r, n2, m2) arrays), so the batch-1 Numba forward reads them with
    unit stride; update them in place (p -= lr * g) and they keep that layout.
    """

    def __init__(self, A, B):
        A, B = np.asarray(A), np.asarray(B)
        A = A[None] if A.ndim == 2 else A
        B = B[None] if B.ndim == 2 else B
        if A.ndim != 3 or B.ndim != 3:
            raise ValueError(f"A and B must be 2-D factors or 3-D stacks (rank, rows, cols), "
                             f"got shapes {A.shape} and {B.shape}")
        if A.shape[0] != B.shape[0]:
            raise ValueError(f"A and B must hold the same number of terms (rank), got {A.shape[0]} and {B.shape[0]}")
        if A.dtype != B.dtype or A.dtype.kind != "f":
            raise ValueError(f"A and B must share one floating dtype, got {A.dtype} and {B.dtype}")
        r, m1, n1 = A.shape
        _, m2, n2 = B.shape
        self.shape = (m1 * m2, n1 * n2)
        self.params = {"A": _stored_transposed(A), "B": _stored_transposed(B)}

    @classmethod
    def init(cls, shape, factors, rank=1, rng=None, scale=0.05, dtype=np.float32):
        """Random factors U(-a, a), with a chosen so that W's entries have the variance of
        U(-scale, scale) (the dense initialisation). factors: ((m1, n1), (m2, n2)) or a KronShape."""
        (m1, n1), (m2, n2) = check_factors(shape, factors)
        rank = int(rank)
        if rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank}")
        rng = np.random.default_rng() if rng is None else rng
        a = product_init_bound(scale, rank)
        A = rng.uniform(-a, a, size=(rank, m1, n1)).astype(dtype)
        B = rng.uniform(-a, a, size=(rank, m2, n2)).astype(dtype)
        return cls(A, B)

    @property
    def rank(self):
        return self.params["A"].shape[0]

    @property
    def factors(self):
        """((m1, n1), (m2, n2))."""
        return self.params["A"].shape[1:], self.params["B"].shape[1:]

    def _apply(self, x):
        return kron.kron_matmul(self.params["A"], self.params["B"], x)

    def forward_plus_sparse(self, x, indptr, indices, values):
        """At batch 1 (inference, sampling) the Kronecker and the CSR products in one Numba call."""
        if x.shape[0] > kron.KRON_NUMBA_MAX_BATCH:
            return super().forward_plus_sparse(x, indptr, indices, values)
        self._check_input(x, self.shape[1], "x")
        return fused.doped_kron_matmul(self.params["A"], self.params["B"], indptr, indices, values, x), (x,)

    def _apply_t(self, dy):
        return kron.kron_matmul_t(self.params["A"], self.params["B"], dy)

    def backward_params(self, dy, cache):
        (x,) = cache
        dA, dB = kron.kron_grad(self.params["A"], self.params["B"], x, dy)
        return {"A": dA, "B": dB}

    def rows(self, ids):
        """W[ids], shape ids.shape + (n,): row p of A kron B is A[:, p // m2] kron B[:, p % m2],
        summed over the rank, computed from the factors alone (KroneckerBERT's embedding is
        A (V, H / c) kron B (1, c): a word's row of A scaled by the one shared row of B)."""
        A, B = self.params["A"], self.params["B"]
        m2 = B.shape[1]
        flat = np.ravel(ids)
        rows = np.einsum("kta,ktj->taj", A[:, flat // m2], B[:, flat % m2])     # (N, n1, n2)
        return rows.reshape(*np.shape(ids), self.shape[1])

    def rows_backward(self, ids, de):
        """The factors' gradients of sum(de * rows(ids)): a word seen twice sums its terms."""
        A, B = self.params["A"], self.params["B"]
        (r, m1, n1), (_, m2, n2) = A.shape, B.shape
        flat = np.ravel(ids)
        i, b = flat // m2, flat % m2
        D = de.reshape(-1, n1, n2)                                               # (N, n1, n2)
        dA, dB = np.zeros((r, m1, n1), A.dtype), np.zeros((r, m2, n2), B.dtype)
        for k in range(r):
            np.add.at(dA[k], i, np.einsum("taj,tj->ta", D, B[k, b]))
            np.add.at(dB[k], b, np.einsum("taj,ta->tj", D, A[k, i]))
        return {"A": dA, "B": dB}

    def to_dense(self):
        return kron.kron_dense(self.params["A"], self.params["B"])

    def _sync(self):
        for k in ("A", "B"):
            self.params[k] = _stored_transposed(self.params[k])
