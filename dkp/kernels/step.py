"""Inference kernels (never used in training): the doped Kronecker forward in one call, and one LSTM
step with the Kronecker product, S and the cell fused in one call (`kron_lstm_step`, used by
`dkp.core.inference.LSTMStep`), and the cell alone (`lstm_cell`), each beside its NumPy reference.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from dkp.kernels.arith import as_unsigned, contiguous, factor_shapes, kron_b_first
from dkp.kernels.kron import _acc_mm, _kron_fwd, kron_dense, kron_matmul_ref, transposed_factor
from dkp.kernels.sparse import _csr_fwd, csr_matmul_ref, csr_to_dense


@njit(cache=True)
def _doped_kron_fwd(At, Bt, indptr, indices, values, x, y, b_first, out_t):
    _kron_fwd(At, Bt, x, y, b_first, out_t, False)
    _csr_fwd(indptr, indices, values, x, y, True)


def doped_kron_matmul_ref(A, B, indptr, indices, values, x):
    m = A.shape[1] * B.shape[1]
    return kron_matmul_ref(A, B, x) + csr_matmul_ref(indptr, indices, values, x, m)


def doped_kron_matmul(A, B, indptr, indices, values, x):
    """y = x @ (sum_k A[k] kron B[k] + S).T in one Numba call."""
    r, m1, n1, m2, n2 = factor_shapes(A, B)
    y = np.empty((x.shape[0], m1 * m2), np.result_type(A.dtype, x.dtype))
    _doped_kron_fwd(transposed_factor(A), transposed_factor(B), as_unsigned(indptr), as_unsigned(indices),
                    values, contiguous(x), y,
                    kron_b_first(m1, n1, m2, n2), m1 >= m2)
    return y


# ============================================================================================
# One fused LSTM step (gate product + cell non-linearities in one call)
# ============================================================================================
#
# These kernels serve inference only (dkp.core.inference), never training, so they may let LLVM
# reassociate sums and fuse multiply-adds: fastmath={"reassoc", "contract"} vectorises the
# dot-product reductions below (8 or 16 float32 lanes, several partial sums) and emits FMAs, while
# NaN and inf keep their IEEE meaning (no "nnan"/"ninf" flags). The results differ from the
# references by rounding only (different summation order); the tests use the same tolerances as
# every other kernel. error_model="numpy" drops Numba's division-by-zero check, whose branch would
# otherwise stop the cell loop from vectorising (the one division, in `_tanh_fast`, is by a
# polynomial >= 4.9e-3).
#
# Layout: the fused step takes A (r, m1, n1) and B (r, m2, n2) row-major (C-contiguous), unlike the
# training kernels above, because its hot loop is a dot product along A's rows: Y[i, q] =
# A[i, :] . T[q, :] with a 2 x 4 register block (two rows of A against four rows of T), so each A
# element loaded from cache feeds four FMAs and no partial result is stored until the row ends.
# `dkp.core.inference.LSTMStep` packs the factors once.

FASTMATH = {"reassoc", "contract"}


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _dot_mm(L, Rt, C):
    """C += L @ Rt.T for L (M, K), Rt (N, K) with contiguous rows; blocks of 2 rows x 4 columns."""
    M, K = L.shape
    N = Rt.shape[0]
    zero = C.dtype.type(0)
    a = 0
    while a < M:
        two = a + 1 < M
        l0 = L[a]
        l1 = L[a + 1] if two else L[a]      # a lone last row is computed twice, stored once
        j = 0
        while j + 4 <= N:
            r0, r1, r2, r3 = Rt[j], Rt[j + 1], Rt[j + 2], Rt[j + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            for k in range(K):
                u, v = l0[k], l1[k]
                w0, w1, w2, w3 = r0[k], r1[k], r2[k], r3[k]
                s00 += u * w0
                s01 += u * w1
                s02 += u * w2
                s03 += u * w3
                s10 += v * w0
                s11 += v * w1
                s12 += v * w2
                s13 += v * w3
            C[a, j] += s00
            C[a, j + 1] += s01
            C[a, j + 2] += s02
            C[a, j + 3] += s03
            if two:
                C[a + 1, j] += s10
                C[a + 1, j + 1] += s11
                C[a + 1, j + 2] += s12
                C[a + 1, j + 3] += s13
            j += 4
        while j < N:
            r0 = Rt[j]
            s00 = s10 = zero
            for k in range(K):
                w0 = r0[k]
                s00 += l0[k] * w0
                s10 += l1[k] * w0
            C[a, j] += s00
            if two:
                C[a + 1, j] += s10
            j += 1
        a += 2


# C += L @ R in axpy form: `_acc_mm`'s Python function compiled a second time, with FMAs
# (with NUMBA_DISABLE_JIT=1, njit returns plain functions, which have no py_func).
_axpy_mm = njit(cache=True, fastmath=FASTMATH, error_model="numpy")(getattr(_acc_mm, "py_func", _acc_mm))


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _kron_gemv_add(A, B, xh, z, b_first):
    """z += (sum_k A[k] kron B[k]) @ xh for one row. A (r, m1, n1), B (r, m2, n2) row-major.

    B first (cost n1*m2*(n2 + m1)): Tt (m2, n1) = B @ X.T (axpy along n1), then
        Z (m1, m2) += A @ Tt.T (dot products along n1, Z is z's own layout);
    A first (cost m1*n2*(n1 + m2)): Ut (n2, m1) = X.T @ A.T (dot products along n1), then
        Yt (m2, m1) = B @ Ut (axpy along m1) and Z += Yt.T."""
    r, m1, n1 = A.shape
    m2, n2 = B.shape[1], B.shape[2]
    X = xh.reshape((n1, n2))
    Xt = np.empty((n2, n1), xh.dtype)
    for p in range(n1):
        for j in range(n2):
            Xt[j, p] = X[p, j]
    Z = z.reshape((m1, m2))
    if b_first:
        Tt = np.empty((m2, n1), z.dtype)
        for k in range(r):
            Tt[:] = 0
            _axpy_mm(B[k], Xt, Tt)
            _dot_mm(A[k], Tt, Z)
    else:
        Ut = np.empty((n2, m1), z.dtype)
        Yt = np.empty((m2, m1), z.dtype)
        for k in range(r):
            Ut[:] = 0
            _dot_mm(Xt, A[k], Ut)
            Yt[:] = 0
            _axpy_mm(B[k], Ut, Yt)
            for i in range(m1):
                for q in range(m2):
                    Z[i, q] += Yt[q, i]


@njit(cache=True, error_model="numpy")
def _csr_gemv_add(indptr, indices, values, xh, z):
    """z += S @ xh for one row (S in CSR, indices unsigned): one gather-dot per row of S.

    No fastmath here: it lets LLVM vectorise the gather-dot with AVX-512 gathers, which measured
    slower (2600 x 1300 at 1%, float32, 2-core x86: 11.4 us against 9.5 us); the scalar loop is
    bound by its three loads per non-zero (value, index, x[index])."""
    k = indptr[0]
    for i in range(indptr.shape[0] - 1):
        acc = z[i]
        end = indptr[i + 1]
        while k < end:
            acc += values[k] * xh[indices[k]]
            k += 1
        z[i] = acc


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _tanh_fast(x):
    """float32 tanh as a [13/6] rational function of x on [-7.9053, 7.9053] (Eigen's
    `generic_fast_tanh_float`; |error| < 3e-7, relative error < 3e-7). Pure arithmetic, so a loop
    over it vectorises; Numba's np.tanh calls the scalar libm tanhf (about 9 ns a call). NaN passes
    through (both comparisons are false); +-inf clamp to +-0.99999976."""
    hi = np.float32(7.90531110763549805)
    x = hi if x > hi else (-hi if x < -hi else x)
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    # tanh(x) = x to float32 precision below 4e-4 (x^3/3 < half an ulp); the select also keeps
    # subnormal x exact, which the rational form would flush to zero
    return x if abs(x) < np.float32(4e-4) else x * (p / q)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _tanh_fast_array(x, out):
    for i in range(x.shape[0]):
        out[i] = _tanh_fast(x[i])


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _lstm_cell(z, c, h_out, c_out, fast_tanh):
    """One row of the LSTM cell, as `dkp.core.lstm.LSTMLayer.forward`: gates z (4H,) in the order
    i, f, g, o; sigmoid(v) = (tanh(v/2) + 1)/2. fast_tanh (float32 only): `_tanh_fast`, else np.tanh."""
    H = c.shape[0]
    half = z.dtype.type(0.5)
    if fast_tanh:
        for u in range(H):
            i = half * _tanh_fast(half * z[u]) + half
            f = half * _tanh_fast(half * z[H + u]) + half
            g = _tanh_fast(z[2 * H + u])
            o = half * _tanh_fast(half * z[3 * H + u]) + half
            cn = f * c[u] + i * g
            c_out[u] = cn
            h_out[u] = o * _tanh_fast(cn)
    else:
        for u in range(H):
            i = half * np.tanh(half * z[u]) + half
            f = half * np.tanh(half * z[H + u]) + half
            g = np.tanh(z[2 * H + u])
            o = half * np.tanh(half * z[3 * H + u]) + half
            cn = f * c[u] + i * g
            c_out[u] = cn
            h_out[u] = o * np.tanh(cn)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _lstm_cells(z, c, h_out, c_out, fast_tanh):
    """`_lstm_cell` on every row of z (b, 4H), c (b, H)."""
    for b in range(z.shape[0]):
        _lstm_cell(z[b], c[b], h_out[b], c_out[b], fast_tanh)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _kron_lstm_step(A, B, indptr, indices, values, bias, x, h, c, h_out, c_out, b_first, fast_tanh):
    """h_out, c_out = one LSTM step with gates z = [x, h] @ (sum_k A[k] kron B[k] + S).T + bias,
    row by row: the concatenation, the Kronecker product, S (CSR, may be empty) and the cell."""
    n_in = x.shape[1]
    n = n_in + h.shape[1]
    xh = np.empty(n, x.dtype)
    z = np.empty(bias.shape[0], bias.dtype)
    for b in range(x.shape[0]):
        xh[:n_in] = x[b]
        xh[n_in:] = h[b]
        z[:] = bias
        _kron_gemv_add(A, B, xh, z, b_first)
        if values.shape[0]:          # plain KP: skip the walk over S's empty row pointers
            _csr_gemv_add(indptr, indices, values, xh, z)
        _lstm_cell(z, c[b], h_out[b], c_out[b], fast_tanh)


# --- references and entry points --------------------------------------------------------------

def lstm_cell_ref(z, c):
    """(h, c) of the LSTM cell in NumPy, with `dkp.core.lstm`'s formulas (the oracle of `_lstm_cell`)."""
    H = c.shape[1]
    a = 0.5 * (np.tanh(0.5 * z) + 1.0)
    i, f, o = a[:, :H], a[:, H:2 * H], a[:, 3 * H:]
    c_new = f * c + i * np.tanh(z[:, 2 * H:3 * H])
    return o * np.tanh(c_new), c_new


def tanh_fast(x):
    """`_tanh_fast` over a 1-D float32 array (for tests and the curious)."""
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty_like(x)
    _tanh_fast_array(x, out)
    return out


def lstm_cell(z, c, out=None):
    """(h, c) of the LSTM cell for gates z (b, 4H) and cell state c (b, H), in one Numba call."""
    h_out, c_out = out if out is not None else (np.empty_like(c), np.empty_like(c))
    _lstm_cells(contiguous(z), contiguous(c), h_out, c_out, z.dtype == np.float32)
    return h_out, c_out


def kron_lstm_step_ref(A, B, indptr, indices, values, bias, x, h, c):
    """One LSTM step with W = sum_k A[k] kron B[k] + S built densely (np.kron, scattered CSR)."""
    W = kron_dense(A, B)
    if len(values):
        W = W + csr_to_dense(indptr, indices, values, W.shape)
    z = np.concatenate([x, h], axis=1) @ W.T + bias
    return lstm_cell_ref(z, c)


# The jitted step itself, for callers that already hold its arrays in its layout (row-major A and B,
# uint32 index arrays, contiguous x, h and c): `dkp.core.inference.LSTMStep` packs them once and calls
# it directly, without the per-call conversions of `kron_lstm_step`.
kron_lstm_step_packed = _kron_lstm_step


def kron_lstm_step(A, B, indptr, indices, values, bias, x, h, c, out=None):
    """One LSTM step (h, c) with W = sum_k A[k] kron B[k] + S (CSR; pass empty arrays for no S), in
    one Numba call. A (r, m1, n1) and B (r, m2, n2) are copied to row-major if they are not;
    `dkp.core.inference.LSTMStep` stores them that way once. x (b, in), h and c (b, H)."""
    A, B = np.ascontiguousarray(A), np.ascontiguousarray(B)
    r, m1, n1, m2, n2 = factor_shapes(A, B)
    h_out, c_out = out if out is not None else (np.empty_like(c), np.empty_like(c))
    _kron_lstm_step(A, B, as_unsigned(indptr), as_unsigned(indices), values, bias, contiguous(x),
                    contiguous(h), contiguous(c), h_out, c_out, kron_b_first(m1, n1, m2, n2),
                    x.dtype == np.float32)
    return h_out, c_out
