"""A vocabulary matrix stored as groups of low-rank blocks: the storage of GroupReduce.

The rows of W (V, n) are the words. They are split into c groups; group g holds the n_g words
`order[start_g:start_g + n_g]`, and their rows are the rank-r_g product

    W[order[start_g:start_g + n_g]] = U_g @ V_g        U_g (n_g, r_g), V_g (r_g, n)

so the matrix stores sum_g r_g (n_g + n) numbers, plus one int32 per word saying where its row lives.
Frequent words get a large rank, rare words a small one (`dkp.compression.groupreduce` chooses the
groups and ranks from a trained matrix). As a decoder, logits = h @ W.T are computed group by group
(h @ V_g.T is (B, r_g), then @ U_g.T); as an embedding, a word's row is U_g[i] @ V_g.
"""
from __future__ import annotations

import numpy as np

from dkp.core.checks import check_matrix_shape
from dkp.core.weights.base import GateMatrix, product_init_bound
from dkp.core.weights.lowrank import check_rank


class GroupLowRank(GateMatrix):
    """W (V, n) whose rows are split into groups, each a low-rank product (see the module docstring).

    order: (V,) a permutation of the row indices, group after group; U, V: lists of the factors
    U_g (n_g, r_g) and V_g (r_g, n). params are {"U0", "V0", "U1", ...}; the order is a buffer."""

    def __init__(self, order, U, V):
        U, V = [np.asarray(u) for u in U], [np.asarray(v) for v in V]
        if not U or len(U) != len(V):
            raise ValueError(f"U and V must be lists of one factor per group, of equal length; got "
                             f"{len(U)} and {len(V)}")
        n = V[0].shape[1] if V[0].ndim == 2 else -1
        for g, (u, v) in enumerate(zip(U, V)):
            if u.ndim != 2 or v.ndim != 2 or u.shape[1] != v.shape[0] or v.shape[1] != n:
                raise ValueError(f"group {g}: U and V must be (n_g, r_g) and (r_g, {n}), got {u.shape} "
                                 f"and {v.shape}")
            if u.dtype != U[0].dtype or v.dtype != U[0].dtype or u.dtype.kind != "f":
                raise ValueError(f"group {g}: every factor must share one floating dtype, got {u.dtype} "
                                 f"and {v.dtype} (group 0: {U[0].dtype})")
        rows = sum(u.shape[0] for u in U)
        order = np.asarray(order)
        if order.shape != (rows,) or not np.array_equal(np.sort(order), np.arange(rows)):
            raise ValueError(f"order must be a permutation of range({rows}) (the groups' {rows} rows), "
                             f"got an array of shape {order.shape}")
        self.shape = (rows, n)
        self.params = {}
        for g, (u, v) in enumerate(zip(U, V)):
            self.params[f"U{g}"], self.params[f"V{g}"] = u, v
        self._set_order(order)

    @classmethod
    def init(cls, shape, sizes, ranks, rng=None, scale=0.05, dtype=np.float32, order=None):
        """Random factors U(-a, a) for groups of `sizes` rows and `ranks`, each row of the variance of
        U(-scale, scale); `order` defaults to the identity (group 0 holds rows 0 .. n_0 - 1)."""
        m, n = check_matrix_shape(shape)
        sizes, ranks = [int(k) for k in sizes], [int(r) for r in ranks]
        if sum(sizes) != m or len(sizes) != len(ranks) or min(sizes, default=0) < 1:
            raise ValueError(f"sizes must be positive and sum to the {m} rows, one rank per group; got "
                             f"{len(sizes)} sizes summing to {sum(sizes)} and {len(ranks)} ranks")
        rng = np.random.default_rng() if rng is None else rng
        U, V = [], []
        for k, r in zip(sizes, ranks):
            check_rank(r, min(k, n), "each group's rank")
            a = product_init_bound(scale, r)
            U.append(rng.uniform(-a, a, (k, r)).astype(dtype))
            V.append(rng.uniform(-a, a, (r, n)).astype(dtype))
        return cls(np.arange(m) if order is None else order, U, V)

    def _set_order(self, order):
        self.order = order.astype(np.int64)                      # (V,) word ids, group after group
        sizes = [self.params[f"U{g}"].shape[0] for g in range(self.n_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # (c + 1,)
        self.inverse = np.empty_like(self.order)                # word id -> position in `order`
        self.inverse[self.order] = np.arange(len(self.order))
        self.group_of = np.searchsorted(self.starts, self.inverse, side="right") - 1  # (V,)

    @property
    def n_groups(self):
        return len(self.params) // 2

    @property
    def ranks(self):
        return [self.params[f"V{g}"].shape[0] for g in range(self.n_groups)]

    @property
    def sizes(self):
        return np.diff(self.starts)

    def factors(self, g):
        """(U_g, V_g) of group g."""
        return self.params[f"U{g}"], self.params[f"V{g}"]

    # --- as a decoder: y = x @ W.T ------------------------------------------------------------
    def forward(self, x):
        self._check_input(x, self.shape[1], "x")
        hs = [x @ self.factors(g)[1].T for g in range(self.n_groups)]       # (B, r_g) each
        return self._from_groups(hs), (x, hs)

    def _from_groups(self, hs):
        grouped = np.concatenate([h @ self.factors(g)[0].T for g, h in enumerate(hs)], axis=1)  # (B, V)
        return grouped[:, self.inverse]                                      # back to word order

    def _apply(self, x):
        return self._from_groups([x @ self.factors(g)[1].T for g in range(self.n_groups)])

    def _group_dys(self, dy):
        grouped = dy[:, self.order]                                          # (B, V), group after group
        return [grouped[:, self.starts[g]:self.starts[g + 1]] for g in range(self.n_groups)]

    def _apply_t(self, dy):
        return sum((d @ U) @ V for d, (U, V) in zip(self._group_dys(dy), map(self.factors, range(self.n_groups))))

    def backward(self, dy, cache):
        x, hs = cache
        dx, grads = 0, {}
        for g, d in enumerate(self._group_dys(dy)):
            U, V = self.factors(g)
            dh = d @ U                                                       # (B, r_g)
            dx = dx + dh @ V
            grads[f"U{g}"], grads[f"V{g}"] = d.T @ hs[g], dh.T @ x           # (n_g, r_g), (r_g, n)
        return dx, grads

    def backward_params(self, dy, cache):
        return self.backward(dy, cache)[1]

    # --- as an embedding: rows --------------------------------------------------------------
    def _split(self, ids):
        """Per group: (which of the flat ids, their row in U_g)."""
        flat = np.ravel(ids)
        group = self.group_of[flat]
        pos = self.inverse[flat] - self.starts[group]
        where = [np.flatnonzero(group == g) for g in range(self.n_groups)]
        return [(w, pos[w]) for w in where]

    def rows(self, ids):
        ids = np.asarray(ids)
        out = np.empty((ids.size, self.shape[1]), self.dtype)                # (N, n)
        for g, (where, pos) in enumerate(self._split(ids)):
            U, V = self.factors(g)
            out[where] = U[pos] @ V
        return out.reshape(ids.shape + (self.shape[1],))

    def rows_backward(self, ids, de):
        de = de.reshape(-1, self.shape[1])                                   # (N, n)
        grads = {}
        for g, (where, pos) in enumerate(self._split(ids)):
            U, V = self.factors(g)
            dU = np.zeros_like(U)
            np.add.at(dU, pos, de[where] @ V.T)
            grads[f"U{g}"], grads[f"V{g}"] = dU, U[pos].T @ de[where]
        return grads

    # --- bookkeeping ------------------------------------------------------------------------
    @property
    def n_bytes(self):
        """The factors, plus one int32 per word for where its row lives."""
        return int(sum(p.nbytes for p in self.params.values()) + 4 * self.shape[0])

    @property
    def buffers(self):
        return {"order": self.order}

    def load_buffers(self, buffers):
        order = np.asarray(buffers.get("order", ()))
        if order.shape != (self.shape[0],) or not np.array_equal(np.sort(order), np.arange(self.shape[0])):
            raise ValueError(f"buffer 'order' must be a permutation of range({self.shape[0]}), got shape "
                             f"{order.shape}")
        self._set_order(order)

    def to_dense(self):
        W = np.empty(self.shape, self.dtype)
        for g in range(self.n_groups):
            U, V = self.factors(g)
            W[self.order[self.starts[g]:self.starts[g + 1]]] = U @ V
        return W

    def describe(self):
        return (super().describe() + f"; {self.n_groups} groups of ranks "
                f"{min(self.ranks)}-{max(self.ranks)}")
