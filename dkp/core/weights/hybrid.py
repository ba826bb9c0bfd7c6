"""Hybrid matrix decomposition (HMD, Thakker et al.): top rows dense, bottom rows low rank."""
from __future__ import annotations

import numpy as np

from dkp.core.checks import check_matrix_shape
from dkp.core.weights.base import GateMatrix, product_init_bound
from dkp.core.weights.lowrank import check_rank


class Hybrid(GateMatrix):
    """W = [D; U @ V]: D (d, n) holds the top d = n_dense_rows rows, U (m - d, r) @ V (r, n) the rest.
    Storage d*n + r*(m - d + n). The cache keeps h = x @ V.T (B, r)."""

    def __init__(self, D, U, V):
        D, U, V = np.asarray(D), np.asarray(U), np.asarray(V)
        if D.ndim != 2 or U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[0] or D.shape[1] != V.shape[1]:
            raise ValueError(f"D, U, V must be (d, n), (m - d, r), (r, n), got {D.shape}, {U.shape}, {V.shape}")
        if not D.dtype == U.dtype == V.dtype or D.dtype.kind != "f":
            raise ValueError(f"D, U, V must share one floating dtype, got {D.dtype}, {U.dtype}, {V.dtype}")
        self.shape = (D.shape[0] + U.shape[0], V.shape[1])
        self.params = {"D": D, "U": U, "V": V}

    @classmethod
    def init(cls, shape, n_dense_rows, rank, rng=None, scale=0.05, dtype=np.float32):
        """D ~ U(-scale, scale); U, V ~ U(-a, a) so that U @ V has the variance of U(-scale, scale)."""
        m, n = check_matrix_shape(shape)
        try:
            d = int(n_dense_rows)
        except (TypeError, ValueError):
            raise ValueError(f"n_dense_rows must be an integer in [0, {m - 1}], got {n_dense_rows!r}") from None
        if not 0 <= d < m:
            raise ValueError(f"n_dense_rows must be in [0, {m - 1}] (some rows must stay low rank), got {d}")
        r = check_rank(rank, min(m - d, n))
        rng = np.random.default_rng() if rng is None else rng
        a = product_init_bound(scale, r)
        return cls(rng.uniform(-scale, scale, (d, n)).astype(dtype),
                   rng.uniform(-a, a, (m - d, r)).astype(dtype), rng.uniform(-a, a, (r, n)).astype(dtype))

    @property
    def n_dense_rows(self):
        return self.params["D"].shape[0]

    @property
    def rank(self):
        return self.params["V"].shape[0]

    def forward(self, x):
        self._check_input(x, self.shape[1], "x")
        p = self.params
        h = x @ p["V"].T                                                  # (B, r)
        return np.concatenate([x @ p["D"].T, h @ p["U"].T], axis=1), (x, h)  # (B, d + m - d)

    def _apply(self, x):
        return self.forward(x)[0]

    def _apply_t(self, dy):
        p, d = self.params, self.n_dense_rows
        return dy[:, :d] @ p["D"] + (dy[:, d:] @ p["U"]) @ p["V"]       # (B, n)

    def backward_params(self, dy, cache):
        x, h = cache
        p, d = self.params, self.n_dense_rows
        dy_low = dy[:, d:]                                                # (B, m - d)
        dh = dy_low @ p["U"]                                              # (B, r)
        return {"D": dy[:, :d].T @ x, "U": dy_low.T @ h, "V": dh.T @ x}

    def to_dense(self):
        p = self.params
        return np.concatenate([p["D"], p["U"] @ p["V"]], axis=0)
