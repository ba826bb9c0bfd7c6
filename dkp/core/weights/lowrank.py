"""Low-rank matrix factorisation (LMF): W = U @ V."""
from __future__ import annotations

import numpy as np

from dkp.core.checks import check_matrix_shape
from dkp.core.weights.base import GateMatrix, product_init_bound


def check_rank(rank, limit, name="rank"):
    try:
        r = int(rank)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive integer, got {rank!r}") from None
    if not 1 <= r <= limit:
        raise ValueError(f"{name} must be in [1, {limit}] for this shape, got {rank!r}")
    return r


class LowRank(GateMatrix):
    """W (m, n) = U (m, r) @ V (r, n); storage r*(m + n). The cache keeps h = x @ V.T (B, r)."""

    def __init__(self, U, V):
        U, V = np.asarray(U), np.asarray(V)
        if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[0]:
            raise ValueError(f"U and V must be (m, r) and (r, n), got {U.shape} and {V.shape}")
        if U.dtype != V.dtype or U.dtype.kind != "f":
            raise ValueError(f"U and V must share one floating dtype, got {U.dtype} and {V.dtype}")
        self.shape = (U.shape[0], V.shape[1])
        self.params = {"U": U, "V": V}

    @classmethod
    def init(cls, shape, rank, rng=None, scale=0.05, dtype=np.float32):
        """U, V ~ U(-a, a) with W's entries of the variance of U(-scale, scale)."""
        m, n = check_matrix_shape(shape)
        r = check_rank(rank, min(m, n))
        rng = np.random.default_rng() if rng is None else rng
        a = product_init_bound(scale, r)
        return cls(rng.uniform(-a, a, (m, r)).astype(dtype), rng.uniform(-a, a, (r, n)).astype(dtype))

    @property
    def rank(self):
        return self.params["V"].shape[0]

    def forward(self, x):
        self._check_input(x, self.shape[1], "x")
        h = x @ self.params["V"].T                          # (B, r)
        return h @ self.params["U"].T, (x, h)                # (B, m)

    def _apply(self, x):
        return (x @ self.params["V"].T) @ self.params["U"].T

    def _apply_t(self, dy):
        return (dy @ self.params["U"]) @ self.params["V"]    # (B, r) @ (r, n)

    def backward_params(self, dy, cache):
        x, h = cache
        dh = dy @ self.params["U"]                           # (B, r)
        return {"U": dy.T @ h, "V": dh.T @ x}                # (m, r), (r, n)

    def rows(self, ids):
        return self.params["U"][ids] @ self.params["V"]       # (..., r) @ (r, n)

    def rows_backward(self, ids, de):
        flat, de = np.ravel(ids), de.reshape(-1, self.shape[1])  # (N,), (N, n)
        dU = np.zeros_like(self.params["U"])
        np.add.at(dU, flat, de @ self.params["V"].T)
        return {"U": dU, "V": self.params["U"][flat].T @ de}  # (m, r), (r, n)

    def to_dense(self):
        return self.params["U"] @ self.params["V"]
