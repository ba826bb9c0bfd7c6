"""CSR sparse products for S (m, n) stored as indptr (m+1,), indices (nnz,) int32, values (nnz,):
y = x @ S.T, dx = dy @ S, the gradient of the values dvalues[k] = sum_b dy[b, row(k)] * x[b, col(k)],
and the scatter into a dense matrix, each Numba kernel beside its NumPy reference. The products always
use Numba (NumPy has no sparse matmul).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from dkp.kernels.arith import as_unsigned, contiguous


def csr_to_dense(indptr, indices, values, shape):
    """Dense (m, n) matrix of a CSR triple (plain NumPy; the oracle of the CSR kernels)."""
    m, n = shape
    W = np.zeros((m, n), values.dtype)
    rows = np.repeat(np.arange(m), np.diff(indptr))
    W[rows, indices] = values
    return W


def csr_indptr(rows, m):
    """Row pointers (m+1,) int32 of entries stored in row-major order, from each entry's row index."""
    indptr = np.zeros(m + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
    return indptr


def csr_from_dense(W, mask=None):
    """CSR triple (indptr int32, indices int32, values) of W's non-zeros, or of W at `mask`."""
    keep = (W != 0) if mask is None else np.asarray(mask, bool)
    rows, cols = np.nonzero(keep)  # row-major order
    return csr_indptr(rows, W.shape[0]), cols.astype(np.int32), W[rows, cols]


def csr_matmul_ref(indptr, indices, values, x, m):
    return x @ csr_to_dense(indptr, indices, values, (m, x.shape[1])).T


def csr_matmul_t_ref(indptr, indices, values, dy, n):
    return dy @ csr_to_dense(indptr, indices, values, (dy.shape[1], n))


def csr_grad_ref(indptr, indices, x, dy):
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    return (dy.T @ x)[rows, indices]


def csr_scatter_ref(indptr, indices, values, out):
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    out[rows, indices] = values
    return out


# The CSR kernels take the index arrays as unsigned views (`as_unsigned`): Numba must otherwise guard
# every x[indices[k]] against negative (wrap-around) indices, which makes the gathers 2-3x slower.

@njit(cache=True)
def _csr_fwd(indptr, indices, values, x, y, accumulate):
    """y (+)= x @ S.T. x (b, n), y (b, m); indptr, indices unsigned."""
    b = x.shape[0]
    m = indptr.shape[0] - 1
    if b < 4:
        for r in range(b):            # one gather-dot per row of S
            xr = x[r]
            yr = y[r]
            k = indptr[0]
            for i in range(m):
                acc = yr[i] if accumulate else y.dtype.type(0)
                end = indptr[i + 1]
                while k < end:
                    acc += values[k] * xr[indices[k]]
                    k += 1
                yr[i] = acc
    else:                             # batch as the vector dimension: x.T (n, b), inner loop over b
        n = x.shape[1]
        xt = np.empty((n, b), x.dtype)
        for r in range(b):
            for j in range(n):
                xt[j, r] = x[r, j]
        acc = np.empty(b, y.dtype)
        k = indptr[0]
        for i in range(m):
            for r in range(b):
                acc[r] = y[r, i] if accumulate else 0
            end = indptr[i + 1]
            while k < end:
                v = values[k]
                xc = xt[indices[k]]
                for r in range(b):
                    acc[r] += v * xc[r]
                k += 1
            for r in range(b):
                y[r, i] = acc[r]


# `_csr_bwd` repeats `_csr_fwd`'s two layouts on purpose (a kernel specialisation, not a copy to
# factor out): few rows loop over rows of S; larger batches transpose so that the batch is the
# contiguous inner loop Numba vectorises.
@njit(cache=True)
def _csr_bwd(indptr, indices, values, dy, dx):
    """dx = dy @ S. dy (b, m), dx (b, n) (overwritten); indptr, indices unsigned."""
    b, n = dx.shape
    m = indptr.shape[0] - 1
    if b < 4:
        for r in range(b):            # scatter-add rows of S
            dxr = dx[r]
            dxr[:] = 0
            k = indptr[0]
            for i in range(m):
                d = dy[r, i]
                end = indptr[i + 1]
                while k < end:
                    dxr[indices[k]] += values[k] * d
                    k += 1
    else:
        dyt = np.empty((m, b), dy.dtype)
        for r in range(b):
            for i in range(m):
                dyt[i, r] = dy[r, i]
        dxt = np.zeros((n, b), dx.dtype)
        k = indptr[0]
        for i in range(m):
            d = dyt[i]
            end = indptr[i + 1]
            while k < end:
                v = values[k]
                dc = dxt[indices[k]]
                for r in range(b):
                    dc[r] += v * d[r]
                k += 1
        for r in range(b):
            for j in range(n):
                dx[r, j] = dxt[j, r]


@njit(cache=True)
def _csr_grad(indptr, indices, x, dy, out):
    """out[k] = sum_b dy[b, row(k)] * x[b, col(k)]; x.T and dy.T copied so each sum reads two rows.
    Four partial sums break the addition chain (the order is fixed, so results are reproducible)."""
    b, n = x.shape
    m = indptr.shape[0] - 1
    xt = np.empty((n, b), x.dtype)
    for r in range(b):
        for j in range(n):
            xt[j, r] = x[r, j]
    dyt = np.empty((m, b), dy.dtype)
    for r in range(b):
        for i in range(m):
            dyt[i, r] = dy[r, i]
    b4 = b - b % 4
    k = indptr[0]
    for i in range(m):
        d = dyt[i]
        end = indptr[i + 1]
        while k < end:
            xc = xt[indices[k]]
            s0 = s1 = s2 = s3 = out.dtype.type(0)
            for r in range(0, b4, 4):
                s0 += d[r] * xc[r]
                s1 += d[r + 1] * xc[r + 1]
                s2 += d[r + 2] * xc[r + 2]
                s3 += d[r + 3] * xc[r + 3]
            s = (s0 + s1) + (s2 + s3)
            for r in range(b4, b):
                s += d[r] * xc[r]
            out[k] = s
            k += 1


@njit(cache=True)
def _csr_scatter(indptr, indices, values, out):
    """out[i, indices[k]] = values[k] on the pattern; entries off the pattern are left untouched."""
    k = indptr[0]
    for i in range(indptr.shape[0] - 1):
        oi = out[i]
        end = indptr[i + 1]
        while k < end:
            oi[indices[k]] = values[k]
            k += 1


def csr_matmul(indptr, indices, values, x, m, out=None, accumulate=False):
    """y = x @ S.T for S (m, n) in CSR; with `accumulate`, y is added into `out`."""
    if out is None:
        out = np.empty((x.shape[0], m), np.result_type(values.dtype, x.dtype))
    _csr_fwd(as_unsigned(indptr), as_unsigned(indices), values, contiguous(x), out, accumulate)
    return out


def csr_matmul_t(indptr, indices, values, dy, n):
    """dx = dy @ S for S (m, n) in CSR, dy (b, m)."""
    dx = np.empty((dy.shape[0], n), np.result_type(values.dtype, dy.dtype))
    _csr_bwd(as_unsigned(indptr), as_unsigned(indices), values, contiguous(dy), dx)
    return dx


def csr_grad(indptr, indices, x, dy):
    """Gradient of S's values on its pattern for y = x @ S.T: (nnz,)."""
    out = np.empty(indices.shape[0], np.result_type(x.dtype, dy.dtype))
    _csr_grad(as_unsigned(indptr), as_unsigned(indices), contiguous(x), contiguous(dy), out)
    return out


def csr_scatter(indptr, indices, values, out):
    """Write the CSR values into the dense `out` (m, n) on the pattern; returns out."""
    _csr_scatter(as_unsigned(indptr), as_unsigned(indices), values, out)
    return out
