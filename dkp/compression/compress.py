"""From a trained dense W to a compressed gate matrix: nearest Kronecker product, truncated SVD,
hybrid, and the residual W - structured kept as a doped overlay S. (Magnitude pruning of a trained
W is `Pruned(W).set_sparsity(s)`.)

Each function returns a ready gate matrix in W's dtype (the SVDs run in float64).
"""
from __future__ import annotations

import numpy as np

from dkp.core.weights import Doped, Hybrid, Kronecker, LowRank, check_factors
from dkp.core.weights.lowrank import check_rank


def _matrix(W):
    W = np.asarray(W)
    if W.ndim != 2 or W.dtype.kind != "f":
        raise ValueError(f"W must be a 2-D floating matrix, got shape {W.shape} and dtype {W.dtype}")
    return W


def rearrange(W, factors):
    """Van Loan & Pitsianis' R(W), (m1*n1, m2*n2): row i*n1 + p holds the block W[i*m2:(i+1)*m2,
    p*n2:(p+1)*n2] flattened, so that ||W - A kron B||_F = ||R(W) - vec(A) vec(B)^T||_F."""
    W = _matrix(W)
    (m1, n1), (m2, n2) = check_factors(W.shape, factors)
    return W.reshape(m1, m2, n1, n2).transpose(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)


def nearest_kronecker(W, factors, rank=1):
    """The best sum of `rank` Kronecker products in Frobenius norm (rank-r SVD of R(W)):
    A[k] = sqrt(s_k) u_k, B[k] = sqrt(s_k) v_k reshaped to (m1, n1) and (m2, n2)."""
    W = _matrix(W)
    (m1, n1), (m2, n2) = check_factors(W.shape, factors)
    r = check_rank(rank, min(m1 * n1, m2 * n2))
    u, s, vt = np.linalg.svd(rearrange(W.astype(np.float64), factors), full_matrices=False)
    root = np.sqrt(s[:r])
    A = (u[:, :r] * root).T.reshape(r, m1, n1)
    B = (vt[:r] * root[:, None]).reshape(r, m2, n2)
    return Kronecker(A.astype(W.dtype), B.astype(W.dtype))


def nearest_kronecker_errors(W, factors, ranks):
    """Relative Frobenius errors ||W - W_r||_F / ||W||_F of `nearest_kronecker(W, factors, r)` for each
    r in `ranks`, computed in float64 (so that an exact representation gives round-off, not float32
    noise). Equals sqrt(sum_{k >= r} s_k^2 / sum_k s_k^2) with s the singular values of R(W),
    indexed from 0."""
    W = _matrix(W).astype(np.float64)
    norm = np.linalg.norm(W)
    if norm == 0:
        raise ValueError("W is all zeros: its relative error is undefined")
    return np.array([np.linalg.norm(W - nearest_kronecker(W, factors, r).to_dense()) / norm for r in ranks])


def truncated_svd(W, rank):
    """The best rank-r approximation U @ V (Eckart-Young), with the singular values split evenly."""
    W = _matrix(W)
    r = check_rank(rank, min(W.shape))
    u, s, vt = np.linalg.svd(W.astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:r])
    return LowRank((u[:, :r] * root).astype(W.dtype), (vt[:r] * root[:, None]).astype(W.dtype))


def hybrid_from_dense(W, n_dense_rows, rank):
    """Top `n_dense_rows` rows of W kept dense, the rest replaced by its best rank-r approximation."""
    W = _matrix(W)
    d = int(n_dense_rows)
    if not 0 <= d < W.shape[0]:
        raise ValueError(f"n_dense_rows must be in [0, {W.shape[0] - 1}], got {n_dense_rows!r}")
    low = truncated_svd(W[d:], rank)
    return Hybrid(W[:d].copy(), low.params["U"], low.params["V"])


def residual_overlay(W, structured, density, **doped_kwargs):
    """Doped(structured) whose S keeps the round(density * m * n) largest entries of W - structured."""
    W = _matrix(W)
    if W.shape != structured.shape:
        raise ValueError(f"W {W.shape} and the structured matrix {structured.shape} must have one shape")
    return Doped(structured, density, S=W - structured.to_dense(), **doped_kwargs)
