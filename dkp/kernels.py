"""Numerical kernels: Kronecker-product and CSR sparse products. The only module that imports numba.

Every fast kernel sits beside the plain NumPy reference (`*_ref`) it is tested against. For each
product there are up to four functions:

    name_ref     the oracle: builds the dense matrix (np.kron, scattered CSR) and multiplies
    name_numba   a Numba loop kernel (fast at small batch: one call, no temporaries)
    name_blas    NumPy matmul on reshaped 3-D arrays (fast at large batch)
    name         the dispatcher the gate matrices call: picks numba or BLAS by batch size

Conventions (row-major throughout, a batch of b rows):
  Kronecker: W = sum_k A[k] kron B[k], A (r, m1, n1), B (r, m2, n2), W (m1*m2, n1*n2).
      With X = x.reshape(b, n1, n2): y = x @ W.T  <=>  Y = A @ X @ B.T (per row and rank term),
      dx = dy @ W  <=>  dX = A.T @ dY @ B,  dA = sum_b dY @ (X @ B.T).T,  dB = sum_b dY.T @ (A @ X).
  CSR: S (m, n) as indptr (m+1,), indices (nnz,) int32, values (nnz,); y = x @ S.T, dx = dy @ S,
      dvalues[k] = sum_b dy[b, row(k)] * x[b, col(k)].

The training-path kernels never reassociate floating-point sums (fastmath stays off), so a loop only
vectorises when its innermost statement is `c[j] += a * r[j]` over a contiguous row ("axpy form").
(Turning fastmath={"reassoc", "contract"} on for `_kron_fwd` measured no gain, 29.8 against 30.1 us
at batch 1 on 2600 x 1300 = (520x260) kron (5x5): axpy loops vectorise without it. Only the
inference kernels at the end of this module use it, for dot-product loops; see there.) The forward
Kronecker product contracts over A's column index, which is axpy form only on A.T; the Kronecker
matrix therefore stores its factors transposed (`Kronecker` keeps A as a view of a contiguous
(r, n1, m1) array) and the Numba kernels take those transposed factors `At`, `Bt`. Any layout works
(the wrappers copy when needed); the stored layout makes the batch-1 forward copy-free.

The last section holds the inference kernels: one LSTM step with the Kronecker product, S and the
cell fused in one call (`kron_lstm_step`, used by `dkp.inference.LSTMStep`), and the cell alone
(`lstm_cell`).

Set NUMBA_DISABLE_JIT=1 to run every kernel as plain Python (slow, for debugging and coverage).
"""
from __future__ import annotations

import numpy as np
from numba import njit

# The batch size up to which `kron_matmul` uses the Numba kernel. Measured on a 2-core x86 machine,
# float32, 2600x1300 = (520x260) kron (5x5), one BLAS thread: batch 1, Numba 31 us vs BLAS 40 us;
# batch 2, 62 vs 47 us. The transpose product and the factor gradients always use BLAS (their Numba
# kernels contract along contiguous rows, a reduction Numba cannot vectorise without fastmath:
# 400 us vs 41 us at batch 1). The CSR products always use Numba (NumPy has no sparse matmul).
KRON_NUMBA_MAX_BATCH = 1


# ============================================================================================
# Kronecker products
# ============================================================================================

def kron_costs(m1, n1, m2, n2):
    """Multiply-adds per row and rank term: (B first: X @ B.T then A @ ., A first: A @ X then . @ B.T)."""
    return n1 * m2 * (n2 + m1), m1 * n2 * (n1 + m2)


def kron_b_first(m1, n1, m2, n2):
    """True when multiplying by B first is no more expensive than by A first."""
    cost_b, cost_a = kron_costs(m1, n1, m2, n2)
    return cost_b <= cost_a


def kron_dense(A, B):
    """The dense W = sum_k A[k] kron B[k] (tests and small diagnostics only)."""
    return sum(np.kron(A[k], B[k]) for k in range(A.shape[0]))


def _factors(A, B):
    """Shapes of 3-D factors: (r, m1, n1, m2, n2)."""
    r, m1, n1 = A.shape
    _, m2, n2 = B.shape
    return r, m1, n1, m2, n2


def transposed_factor(F):
    """(r, p, q) factor -> contiguous (r, q, p) array; no copy when F is stored transposed."""
    t = F.transpose(0, 2, 1)
    return t if t.flags.c_contiguous else np.ascontiguousarray(t)


def _rows(x):
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


# --- references (the oracle: np.kron and dense products) ------------------------------------

def kron_matmul_ref(A, B, x):
    """y = x @ W.T with W built by np.kron."""
    return x @ kron_dense(A, B).T


def kron_matmul_t_ref(A, B, dy):
    """dx = dy @ W with W built by np.kron."""
    return dy @ kron_dense(A, B)


def kron_grad_ref(A, B, x, dy):
    """(dA, dB) from the dense gradient dW = dy.T @ x, contracted against the other factor."""
    r, m1, n1, m2, n2 = _factors(A, B)
    dW4 = (dy.T @ x).reshape(m1, m2, n1, n2)  # dW[i*m2+q, p*n2+j] -> [i, q, p, j]
    dA = np.stack([np.einsum("iqpj,qj->ip", dW4, B[k]) for k in range(r)])
    dB = np.stack([np.einsum("iqpj,ip->qj", dW4, A[k]) for k in range(r)])
    return dA, dB


# --- Numba kernels ---------------------------------------------------------------------------

@njit(cache=True)
def _acc_mm(L, R, C):
    """C += L @ R, axpy form: the inner loop runs along a row of R and of C (keep those contiguous)."""
    M, K = L.shape
    N = R.shape[1]
    for a in range(M):
        c = C[a]
        for k in range(K):
            s = L[a, k]
            r = R[k]
            for j in range(N):
                c[j] += s * r[j]


@njit(cache=True)
def _kron_fwd(At, Bt, x, y, b_first, out_t, accumulate):
    """y (+)= x @ W.T. At (r, n1, m1), Bt (r, n2, m2), x (b, n1*n2) C-contiguous, y (b, m1*m2).

    out_t: accumulate Y transposed, (m2, m1), so that the long inner loops run over m1."""
    r, n1, m1 = At.shape
    n2, m2 = Bt.shape[1], Bt.shape[2]
    if out_t:
        Y = np.empty((m2, m1), y.dtype)
    else:
        Y = np.empty((m1, m2), y.dtype)
    if b_first:
        T = np.empty((n1, m2), y.dtype)  # X @ B.T
    elif out_t:
        T = np.empty((n2, m1), y.dtype)  # (A @ X).T
    else:
        T = np.empty((m1, n2), y.dtype)  # A @ X
    for b in range(x.shape[0]):
        X = x[b].reshape((n1, n2))
        Y[:] = 0
        for k in range(r):
            T[:] = 0
            if b_first:
                _acc_mm(X, Bt[k], T)                 # T (n1, m2) = X @ B.T
                if out_t:
                    _acc_mm(T.T, At[k], Y)           # Y.T (m2, m1) += T.T @ A.T
                else:
                    _acc_mm(At[k].T, T, Y)           # Y (m1, m2) += A @ T
            elif out_t:
                _acc_mm(X.T, At[k], T)               # U.T (n2, m1) = X.T @ A.T
                _acc_mm(Bt[k].T, T, Y)               # Y.T (m2, m1) += B @ U.T
            else:
                _acc_mm(At[k].T, X, T)               # U (m1, n2) = A @ X
                _acc_mm(T, Bt[k], Y)                 # Y (m1, m2) += U @ B.T
        yb = y[b]
        for i in range(m1):
            for q in range(m2):
                v = Y[q, i] if out_t else Y[i, q]
                if accumulate:
                    yb[i * m2 + q] += v
                else:
                    yb[i * m2 + q] = v


@njit(cache=True)
def _kron_bwd(At, Bt, dy, dx, b_first):
    """dx = dy @ W. At (r, n1, m1), Bt (r, n2, m2), dy (b, m1*m2) C-contiguous, dx (b, n1*n2)."""
    r, n1, m1 = At.shape
    n2, m2 = Bt.shape[1], Bt.shape[2]
    dX = np.empty((n1, n2), dx.dtype)
    V = np.empty((m1, n2), dx.dtype)
    Z = np.empty((n1, m2), dx.dtype)
    for b in range(dy.shape[0]):
        dY = dy[b].reshape((m1, m2))
        dX[:] = 0
        for k in range(r):
            if b_first:   # cost m1*n2*(m2+n1)
                V[:] = 0
                _acc_mm(dY, Bt[k].T, V)              # V (m1, n2) = dY @ B
                _acc_mm(At[k], V, dX)                # dX (n1, n2) += A.T @ V
            else:         # cost n1*m2*(m1+n2)
                Z[:] = 0
                _acc_mm(At[k], dY, Z)                # Z (n1, m2) = A.T @ dY
                _acc_mm(Z, Bt[k].T, dX)              # dX (n1, n2) += Z @ B
        dx[b] = dX.reshape(n1 * n2)


@njit(cache=True)
def _kron_grad(At, Bt, x, dy, dAt, dBt, b_first):
    """Accumulate the factor gradients in transposed layout: dAt (r, n1, m1), dBt (r, n2, m2)."""
    r, n1, m1 = At.shape
    n2, m2 = Bt.shape[1], Bt.shape[2]
    dYt = np.empty((m2, m1), dAt.dtype)
    T = np.empty((n1, m2), dAt.dtype)
    Vt = np.empty((n2, m1), dAt.dtype)
    for b in range(x.shape[0]):
        X = x[b].reshape((n1, n2))
        dY = dy[b].reshape((m1, m2))
        dYt[:] = dY.T
        for k in range(r):
            if b_first:
                T[:] = 0
                _acc_mm(X, Bt[k], T)                 # T (n1, m2) = X @ B.T
                _acc_mm(T, dYt, dAt[k])              # dA.T (n1, m1) += T @ dY.T
                T[:] = 0
                _acc_mm(At[k], dY, T)                # Z (n1, m2) = A.T @ dY
                _acc_mm(X.T, T, dBt[k])              # dB.T (n2, m2) += X.T @ Z
            else:
                Vt[:] = 0
                _acc_mm(Bt[k], dYt, Vt)              # V.T (n2, m1) = B.T @ dY.T
                _acc_mm(X, Vt, dAt[k])               # dA.T (n1, m1) += X @ V.T
                Vt[:] = 0
                _acc_mm(X.T, At[k], Vt)              # U.T (n2, m1) = X.T @ A.T
                _acc_mm(Vt, dY, dBt[k])              # dB.T (n2, m2) += U.T @ dY


# --- Python entry points ---------------------------------------------------------------------

def kron_matmul_numba(A, B, x, out=None, accumulate=False):
    """y = x @ W.T with the Numba kernel; `accumulate` adds into `out` instead of overwriting."""
    r, m1, n1, m2, n2 = _factors(A, B)
    if out is None:
        out = np.empty((x.shape[0], m1 * m2), np.result_type(A.dtype, x.dtype))
    _kron_fwd(transposed_factor(A), transposed_factor(B), _rows(x), out,
              kron_b_first(m1, n1, m2, n2), m1 >= m2, accumulate)
    return out


def kron_matmul_blas(A, B, x):
    """y = x @ W.T with BLAS: one large matmul per stage (batch folded into the columns)."""
    r, m1, n1, m2, n2 = _factors(A, B)
    b = x.shape[0]
    X = x.reshape(b, n1, n2)
    y = None
    for k in range(r):
        if kron_b_first(m1, n1, m2, n2):
            T = (X.reshape(b * n1, n2) @ B[k].T).reshape(b, n1, m2)     # (b, n1, m2)
            T = T.transpose(1, 0, 2).reshape(n1, b * m2)                 # (n1, b*m2)
            Y = (A[k] @ T).reshape(m1, b, m2)                            # (m1, b, m2)
        else:
            Xc = X.transpose(1, 0, 2).reshape(n1, b * n2)                # (n1, b*n2)
            U = (A[k] @ Xc).reshape(m1 * b, n2)                          # (m1*b, n2)
            Y = (U @ B[k].T).reshape(m1, b, m2)                          # (m1, b, m2)
        y = Y if y is None else y + Y
    return np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(b, m1 * m2)


def kron_matmul(A, B, x):
    """y = x @ (sum_k A[k] kron B[k]).T for x (b, n1*n2): Numba at batch <= KRON_NUMBA_MAX_BATCH."""
    if x.shape[0] <= KRON_NUMBA_MAX_BATCH:
        return kron_matmul_numba(A, B, x)
    return kron_matmul_blas(A, B, x)


def kron_matmul_t_numba(A, B, dy):
    """dx = dy @ W with the Numba kernel."""
    r, m1, n1, m2, n2 = _factors(A, B)
    dx = np.empty((dy.shape[0], n1 * n2), np.result_type(A.dtype, dy.dtype))
    # W.T = sum A.T kron B.T, so the cheaper order is that of the (n, m) product.
    _kron_bwd(transposed_factor(A), transposed_factor(B), _rows(dy), dx, kron_b_first(n1, m1, n2, m2))
    return dx


def kron_matmul_t_blas(A, B, dy):
    """dx = dy @ W with BLAS: W.T = sum_k A[k].T kron B[k].T, so this is the forward product with
    the factors transposed (dX = A.T @ dY @ B), in whichever order is cheaper for that shape."""
    return kron_matmul_blas(A.transpose(0, 2, 1), B.transpose(0, 2, 1), dy)


def kron_matmul_t(A, B, dy):
    """dx = dy @ (sum_k A[k] kron B[k]) for dy (b, m1*m2); BLAS at every batch (see the top)."""
    return kron_matmul_t_blas(A, B, dy)


def kron_grad_numba(A, B, x, dy):
    """(dA, dB) with the Numba kernel; returned as transposed views of contiguous (r, n, m) arrays."""
    r, m1, n1, m2, n2 = _factors(A, B)
    dtype = np.result_type(A.dtype, x.dtype)
    dAt = np.zeros((r, n1, m1), dtype)
    dBt = np.zeros((r, n2, m2), dtype)
    _kron_grad(transposed_factor(A), transposed_factor(B), _rows(x), _rows(dy), dAt, dBt,
               kron_b_first(m1, n1, m2, n2))
    return dAt.transpose(0, 2, 1), dBt.transpose(0, 2, 1)


def kron_grad_blas(A, B, x, dy):
    """(dA, dB) with BLAS: each a single large matmul over the whole batch."""
    r, m1, n1, m2, n2 = _factors(A, B)
    b = x.shape[0]
    X = x.reshape(b, n1, n2)
    dY = dy.reshape(b, m1, m2)
    dYc = dY.transpose(1, 0, 2).reshape(m1, b * m2)                      # (m1, b*m2)
    b_first = kron_b_first(m1, n1, m2, n2)
    dA = np.empty((r, m1, n1), np.result_type(A.dtype, x.dtype))
    dB = np.empty((r, m2, n2), dA.dtype)
    for k in range(r):
        if b_first:
            T = (X.reshape(b * n1, n2) @ B[k].T).reshape(b, n1, m2)     # (b, n1, m2)
            dA[k] = dYc @ T.transpose(1, 0, 2).reshape(n1, b * m2).T     # (m1, n1)
            Z = (A[k].T @ dYc).reshape(n1, b, m2)                        # (n1, b, m2)
            dB[k] = Z.reshape(n1 * b, m2).T @ X.transpose(1, 0, 2).reshape(n1 * b, n2)
        else:
            V = (dY.reshape(b * m1, m2) @ B[k]).reshape(b, m1, n2)       # (b, m1, n2)
            Xc = X.transpose(1, 0, 2).reshape(n1, b * n2)                # (n1, b*n2)
            dA[k] = V.transpose(1, 0, 2).reshape(m1, b * n2) @ Xc.T      # (m1, n1)
            U = (A[k] @ Xc).reshape(m1 * b, n2)                          # (m1*b, n2)
            dB[k] = dYc.reshape(m1 * b, m2).T @ U                        # (m2, n2)
    return dA, dB


def kron_grad(A, B, x, dy):
    """(dA, dB) for y = x @ W.T summed over the batch. BLAS: gradients are taken once per sequence,
    over b = batch x timesteps rows, where one large matmul beats any loop."""
    return kron_grad_blas(A, B, x, dy)


# ============================================================================================
# CSR sparse products
# ============================================================================================

def csr_to_dense(indptr, indices, values, shape):
    """Dense (m, n) matrix of a CSR triple (plain NumPy; the oracle of the CSR kernels)."""
    m, n = shape
    W = np.zeros((m, n), values.dtype)
    rows = np.repeat(np.arange(m), np.diff(indptr))
    W[rows, indices] = values
    return W


def csr_from_dense(W, mask=None):
    """CSR triple (indptr int32, indices int32, values) of W's non-zeros, or of W at `mask`."""
    keep = (W != 0) if mask is None else np.asarray(mask, bool)
    rows, cols = np.nonzero(keep)  # row-major order
    indptr = np.zeros(W.shape[0] + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=W.shape[0]), out=indptr[1:])
    return indptr, cols.astype(np.int32), W[rows, cols]


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


# The CSR kernels take the index arrays as unsigned views (`_unsigned`): Numba must otherwise guard
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


def _unsigned(a):
    """Non-negative int32 index array -> its uint32 view (no copy); other int arrays are converted."""
    return a.view(np.uint32) if a.dtype == np.int32 else a.astype(np.uint32)


def csr_matmul(indptr, indices, values, x, m, out=None, accumulate=False):
    """y = x @ S.T for S (m, n) in CSR; with `accumulate`, y is added into `out`."""
    if out is None:
        out = np.empty((x.shape[0], m), np.result_type(values.dtype, x.dtype))
    _csr_fwd(_unsigned(indptr), _unsigned(indices), values, _rows(x), out, accumulate)
    return out


def csr_matmul_t(indptr, indices, values, dy, n):
    """dx = dy @ S for S (m, n) in CSR, dy (b, m)."""
    dx = np.empty((dy.shape[0], n), np.result_type(values.dtype, dy.dtype))
    _csr_bwd(_unsigned(indptr), _unsigned(indices), values, _rows(dy), dx)
    return dx


def csr_grad(indptr, indices, x, dy):
    """Gradient of S's values on its pattern for y = x @ S.T: (nnz,)."""
    out = np.empty(indices.shape[0], np.result_type(x.dtype, dy.dtype))
    _csr_grad(_unsigned(indptr), _unsigned(indices), _rows(x), _rows(dy), out)
    return out


def csr_scatter(indptr, indices, values, out):
    """Write the CSR values into the dense `out` (m, n) on the pattern; returns out."""
    _csr_scatter(_unsigned(indptr), _unsigned(indices), values, out)
    return out


# ============================================================================================
# Fused doped Kronecker forward (the batch-1 inference path of Doped(Kronecker))
# ============================================================================================

@njit(cache=True)
def _doped_kron_fwd(At, Bt, indptr, indices, values, x, y, b_first, out_t):
    _kron_fwd(At, Bt, x, y, b_first, out_t, False)
    _csr_fwd(indptr, indices, values, x, y, True)


def doped_kron_matmul_ref(A, B, indptr, indices, values, x):
    m = A.shape[1] * B.shape[1]
    return kron_matmul_ref(A, B, x) + csr_matmul_ref(indptr, indices, values, x, m)


def doped_kron_matmul(A, B, indptr, indices, values, x):
    """y = x @ (sum_k A[k] kron B[k] + S).T in one Numba call."""
    r, m1, n1, m2, n2 = _factors(A, B)
    y = np.empty((x.shape[0], m1 * m2), np.result_type(A.dtype, x.dtype))
    _doped_kron_fwd(transposed_factor(A), transposed_factor(B), _unsigned(indptr), _unsigned(indices),
                    values, _rows(x), y,
                    kron_b_first(m1, n1, m2, n2), m1 >= m2)
    return y


# ============================================================================================
# Inference: one fused LSTM step (gate product + cell non-linearities in one call)
# ============================================================================================
#
# These kernels serve inference only (dkp.inference), never training, so they may let LLVM
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
# `dkp.inference.LSTMStep` packs the factors once.

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
    """One row of the LSTM cell, as `dkp.lstm.LSTMLayer.forward`: gates z (4H,) in the order
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
    """(h, c) of the LSTM cell in NumPy, with `dkp.lstm`'s formulas (the oracle of `_lstm_cell`)."""
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
    _lstm_cells(_rows(z), _rows(c), h_out, c_out, z.dtype == np.float32)
    return h_out, c_out


def kron_lstm_step_ref(A, B, indptr, indices, values, bias, x, h, c):
    """One LSTM step with W = sum_k A[k] kron B[k] + S built densely (np.kron, scattered CSR)."""
    W = kron_dense(A, B)
    if len(values):
        W = W + csr_to_dense(indptr, indices, values, W.shape)
    z = np.concatenate([x, h], axis=1) @ W.T + bias
    return lstm_cell_ref(z, c)


def kron_lstm_step(A, B, indptr, indices, values, bias, x, h, c, out=None):
    """One LSTM step (h, c) with W = sum_k A[k] kron B[k] + S (CSR; pass empty arrays for no S), in
    one Numba call. A (r, m1, n1) and B (r, m2, n2) are copied to row-major if they are not;
    `dkp.inference.LSTMStep` stores them that way once. x (b, in), h and c (b, H)."""
    A, B = np.ascontiguousarray(A), np.ascontiguousarray(B)
    r, m1, n1, m2, n2 = _factors(A, B)
    h_out, c_out = out if out is not None else (np.empty_like(c), np.empty_like(c))
    _kron_lstm_step(A, B, _unsigned(indptr), _unsigned(indices), values, bias, _rows(x), _rows(h),
                    _rows(c), h_out, c_out, kron_b_first(m1, n1, m2, n2), x.dtype == np.float32)
    return h_out, c_out
