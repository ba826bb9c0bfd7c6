"""The gate-matrix protocol and the dense matrix.

Every LSTM layer multiplies its input rows by one gate matrix W of shape (m, n) = (4H, in + H).
All compression methods are different ways of storing and multiplying W, so the LSTM only ever
talks to this protocol:

    y, cache = W.forward(x)             # x: (B, n) -> y: (B, m);  y = x @ W.T
    dx = W.backward_input(dy, cache)    # (B, m) -> (B, n);        dx = dy @ W
    grads = W.backward_params(dy, cache)  # {name: array shaped like W.params[name]}
    dx, grads = W.backward(dy, cache)   # both at once
    W.params                            # {name: array}: what the optimizer updates
    W.n_params, W.n_bytes, W.to_dense()

A (V, H) matrix over the vocabulary also serves as the embedding (a row per word) and as the softmax
decoder (logits = h @ W.T, the protocol above). The matrices that can also look rows up (dense,
pruned, low rank, grouped low rank) answer

    e = W.rows(ids)                     # ids: int array (...) -> (..., n), the rows W[ids]
    grads = W.rows_backward(ids, de)    # de: (..., n) -> {name: array}, gradients of sum(de * e)

The one rule that makes the LSTM fast: a cache is a tuple of arrays whose first axis is the batch
row. W acts on each row independently, so the caches of T timesteps can be concatenated row-wise
and the parameter gradients of a whole sequence computed in one call (one large matrix product
instead of T small ones). `stack_caches` does that.

Two hooks, no-ops by default, let the training loop drive matrices that have state between steps:

    W.begin_batch(rng)    # once per training minibatch, before its forward: draw dropout masks from
                          # this numpy Generator (co-matrix dropout; Numba's RNG is never used)
    W.after_update()      # after every optimizer step: re-impose constraints (zeros off a mask)
"""
from __future__ import annotations

import numpy as np

from dkp.core.checks import check_matrix_shape
from dkp.kernels import sparse


def product_init_bound(scale, n_terms):
    """Bound a of U(-a, a) factors such that a sum of `n_terms` products of two such factors has the
    variance of U(-scale, scale): n_terms * (a^2/3)^2 = scale^2/3."""
    return float(np.sqrt(np.sqrt(3.0) * scale / np.sqrt(n_terms)))


def stack_caches(caches):
    """Concatenate per-timestep caches row-wise: [(x_t, ...)] -> (x_all, ...)."""
    if not caches:
        raise ValueError("caches must hold at least one cache")
    return tuple(None if parts[0] is None else np.concatenate(parts, axis=0) for parts in zip(*caches))


class GateMatrix:
    """Base class of every gate matrix. Subclasses set `shape` and `params` and implement
    `_apply`, `_apply_t` and `backward_params`; the default cache is the input alone."""

    shape: tuple
    params: dict
    # `training` is read by the matrices whose forward differs between training and evaluation
    # (the sparse overlay with co-matrix dropout); the others ignore it.
    training = False

    # --- the protocol -------------------------------------------------------------------------
    def forward(self, x):
        """y = x @ W.T for x of shape (B, n). Returns (y, cache)."""
        self._check_input(x, self.shape[1], "x")
        return self._apply(x), (x,)

    def forward_plus_sparse(self, x, indptr, indices, values):
        """y = x @ (W + S).T for a CSR matrix S of W's shape, with W's own cache: the product of a
        doped matrix whose S is this matrix's overlay. A structure may fuse the two products
        (Kronecker does at batch 1); by default W's forward, then S's product added in place."""
        y, cache = self.forward(x)
        return sparse.csr_matmul(indptr, indices, values, x, self.shape[0], out=y, accumulate=True), cache

    def backward_input(self, dy, cache):
        """dx = dy @ W for dy of shape (B, m)."""
        return self._apply_t(dy)

    def backward_params(self, dy, cache):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy, cache):
        """Both gradients: (dx, {name: dparam})."""
        return self.backward_input(dy, cache), self.backward_params(dy, cache)

    def rows(self, ids):
        """The rows W[ids] of shape ids.shape + (n,), for a matrix used as an embedding."""
        raise TypeError(f"a {type(self).__name__} matrix cannot serve as an embedding (it has no row lookup); "
                        f"use a dense, pruned, low-rank, Kronecker or grouped low-rank matrix")

    def rows_backward(self, ids, de):  # pragma: no cover - the matrices without `rows` never get here
        raise TypeError(f"a {type(self).__name__} matrix cannot serve as an embedding")

    # --- hooks for the training loop (no-ops unless a subclass needs them) -----------------------
    def after_update(self):
        """Called after every optimizer update of `params` (e.g. to keep pruned weights at zero)."""

    def begin_batch(self, rng):
        """Called once per training minibatch with the trainer's NumPy Generator, before the forward
        passes of that minibatch: matrices that draw random masks (co-matrix dropout) draw them here
        or keep `rng` for per-step masks. A no-op for deterministic matrices."""

    @property
    def buffers(self):
        """Non-trainable arrays a checkpoint must hold (masks, sparse indices): {name: array}."""
        return {}

    def load_buffers(self, buffers):
        """Restore `buffers` from a checkpoint (before the parameters are loaded)."""
        if buffers:
            raise ValueError(f"{type(self).__name__} has no buffers, got {sorted(buffers)}")

    # --- bookkeeping -------------------------------------------------------------------------
    @property
    def n_params(self):
        """Stored numbers that define W (non-zeros only, for sparse parts)."""
        return int(sum(p.size for p in self.params.values()))

    @property
    def n_bytes(self):
        """Bytes needed to store W for inference, index arrays included."""
        return int(sum(p.nbytes for p in self.params.values()))

    @property
    def dtype(self):
        return next(iter(self.params.values())).dtype

    def to_dense(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def astype(self, dtype):
        """Cast every parameter in place (float64 for gradient checks); returns self."""
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)
        self._sync()
        return self

    def _sync(self):
        """Hook for subclasses whose attributes are views of `params` (called after a cast or load)."""

    def describe(self):
        """One line for logs: kind, shape, parameters, bytes."""
        m, n = self.shape
        return (f"{type(self).__name__}({m}x{n}): {self.n_params:,} params, {self.n_bytes:,} bytes, "
                f"{m * n / max(self.n_params, 1):.1f}x fewer params than dense")

    def _check_input(self, x, n, name):
        if x.ndim != 2 or x.shape[1] != n:
            raise ValueError(f"{name} must have shape (batch, {n}) for a {self.shape[0]}x{self.shape[1]} "
                             f"gate matrix, got {x.shape}")


class DenseProducts:
    """The products of a matrix held densely in params["W"], with BLAS: shared by `Dense` and by the
    pruned matrix (whose W has zeros off its mask)."""

    def dense_products(self):
        """The array whose products these are: the LSTM's fast path (dkp.core.lstm_fast) splits it."""
        return self.params["W"]

    def _apply(self, x):
        return x @ self.params["W"].T

    def _apply_t(self, dy):
        return dy @ self.params["W"]

    def backward_params(self, dy, cache):
        (x,) = cache
        return {"W": dy.T @ x}  # (m, B) @ (B, n)

    def rows(self, ids):
        return self.params["W"][ids]                          # (..., n)

    def rows_backward(self, ids, de):
        dW = np.zeros_like(self.params["W"])
        np.add.at(dW, np.ravel(ids), de.reshape(-1, self.shape[1]))  # a word seen twice sums its rows
        return {"W": dW}


class Dense(DenseProducts, GateMatrix):
    """A plain dense matrix, multiplied with BLAS."""

    def __init__(self, W):
        W = np.asarray(W)
        if W.ndim != 2:
            raise ValueError(f"W must be a 2-D matrix, got shape {W.shape}")
        self.shape = W.shape
        self.params = {"W": W}

    @classmethod
    def init(cls, shape, rng, scale, dtype=np.float32):
        """Uniform(-scale, scale) initialisation, as in Zaremba et al."""
        m, n = check_matrix_shape(shape)
        return cls(rng.uniform(-scale, scale, size=(m, n)).astype(dtype))

    def to_dense(self):
        return self.params["W"].copy()
