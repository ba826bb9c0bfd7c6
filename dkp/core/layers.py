"""The transformer's small layers, each a forward that returns its output and a cache, paired with a
hand-written backward over that cache: LayerNorm, GELU, inverted dropout, a gate matrix with a bias
(`Linear`), and the embedding of tokens plus learned positions.

Shapes: the transformer's residual stream is (T, B, H), time first as in the LSTM (dkp.core.lstm).
Everything here acts on the last axis or row by row, so any leading axes pass through; a gate matrix
of dkp.core.weights sees the rows flattened to (N, n), N the product of the leading axes.

LayerNorm and GELU run their equations, forward and backward, in one Numba call each
(`dkp.kernels.transformer`, where their NumPy references sit and are tested against them): in NumPy
each term would be a pass over the whole array with a temporary.
"""
from __future__ import annotations

import numpy as np

from dkp.kernels import transformer as kernels
from dkp.kernels.transformer import GELU_A, GELU_C  # noqa: F401 - GPT-2's constants, named here too


class LayerNorm:
    """y = (x - mean(x)) / sqrt(var(x) + eps) * g + b over the last axis, the features of each row.
    g starts at 1 and b at 0, as in GPT-2; params {"g": (H,), "b": (H,)}."""

    def __init__(self, size, dtype=np.float32, eps=1e-5):
        self.g, self.b = np.ones(size, dtype), np.zeros(size, dtype)
        self.eps = float(eps)

    @property
    def params(self):
        return {"g": self.g, "b": self.b}

    def astype(self, dtype):
        self.g, self.b = self.g.astype(dtype), self.b.astype(dtype)
        return self

    def forward(self, x):
        """x (..., H) -> y (..., H), cache (xhat, rstd): xhat (..., H) zero mean, unit variance, and
        rstd = 1 / sqrt(var + eps) (..., 1)."""
        y, xhat, rstd = kernels.layernorm_forward(x, self.g, self.b, self.eps)
        return y, (xhat, rstd)

    def backward(self, dy, cache):
        """dy (..., H) -> dx (..., H), {"g", "b"}. With dxhat = dy * g, the mean and the variance
        each take one projection out of dxhat:
            dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))."""
        xhat, rstd = cache
        dx, dg, db = kernels.layernorm_backward(dy, xhat, rstd, self.g)
        return dx, {"g": dg, "b": db}


def gelu(x):
    """GELU in GPT-2's tanh approximation: 0.5 x (1 + tanh(c (x + a x^3))), c = sqrt(2 / pi),
    a = 0.044715. Returns (y, cache (x, t)), t the tanh."""
    y, t = kernels.gelu_forward(x)
    return y, (x, t)


def gelu_backward(dy, cache):
    """dx = dy * d gelu / dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2))."""
    x, t = cache
    return kernels.gelu_backward(dy, x, t)


def dropout(x, p, rng):
    """Inverted dropout: each entry zeroed with probability p, the kept ones divided by 1 - p, so
    evaluation needs no rescaling. The mask is drawn from the NumPy Generator `rng`; without one (or
    with p = 0) dropout is off and x comes back as is. Returns (y, mask), mask None when off."""
    if rng is None or p == 0.0:
        return x, None
    mask = (rng.random(x.shape, dtype=np.float32) >= p).astype(x.dtype) / (1.0 - p)
    return x * mask, mask


def dropout_backward(dy, mask):
    return dy if mask is None else dy * mask


class Linear:
    """y = x @ W.T + b: a gate matrix W (m, n) of any structure (dense, Kronecker, low rank, doped,
    ...) and a bias b (m,). x (..., n) -> y (..., m). params {**W.params, "b": b}, as an LSTM layer
    names its gate matrix and bias."""

    def __init__(self, W, b, name="Linear"):
        if np.shape(b) != (W.shape[0],):
            raise ValueError(f"{name}: the bias must have shape ({W.shape[0]},) to match its "
                             f"{W.shape[0]}x{W.shape[1]} matrix, got {np.shape(b)}")
        if "b" in W.params:
            raise ValueError(f"{name}: the matrix already has a parameter named 'b'")
        self.W, self.b = W, b

    @property
    def params(self):
        return {**self.W.params, "b": self.b}

    def astype(self, dtype):
        self.W.astype(dtype)
        self.b = self.b.astype(dtype)
        return self

    def forward(self, x):
        """x (..., n) -> y (..., m), the matrix's cache."""
        lead = x.shape[:-1]
        y, wcache = self.W.forward(x.reshape(-1, x.shape[-1]))   # (N, m)
        y += self.b
        return y.reshape(*lead, self.W.shape[0]), wcache

    def backward(self, dy, cache):
        """dy (..., m) -> dx (..., n), {**matrix gradients, "b"}: one call of the matrix's backward
        over all N rows."""
        lead = dy.shape[:-1]
        dy2 = dy.reshape(-1, self.W.shape[0])                 # (N, m)
        dx, grads = self.W.backward(dy2, cache)
        grads["b"] = dy2.sum(axis=0)
        return dx.reshape(*lead, self.W.shape[1]), grads


def embed(E, pos, x, start=0):
    """Tokens plus learned positions: e[t, b] = E[x[t, b]] + pos[start + t], for token ids x (T, B),
    E a (V, H) gate matrix read with `rows` and pos (block_size, H) a plain array; `start` is the
    position of x's first row (the length of the context before it). Returns e (T, B, H)."""
    return E.rows(x) + pos[start:start + x.shape[0], None, :]


def embed_backward(E, pos, x, start, de):
    """The gradients of sum(de * embed(E, pos, x, start)): E's ({name: array}, a word seen twice sums
    its rows) and pos's (block_size, H), zero outside the window's positions."""
    dpos = np.zeros_like(pos)
    dpos[start:start + x.shape[0]] = de.sum(axis=1)          # (T, H): summed over the batch
    return E.rows_backward(x, de), dpos
