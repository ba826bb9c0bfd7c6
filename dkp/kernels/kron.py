"""The Kronecker product W = sum_k A[k] kron B[k] (rank r): y = x @ W.T, dx = dy @ W and the
factor gradients, each beside its NumPy reference (np.kron and dense products).

For each product there are up to three functions:

    name_ref     the oracle: builds the dense matrix with np.kron and multiplies
    name_numba   a Numba loop kernel (fast at small batch: one call, no temporaries)
    name_blas    NumPy matmul on reshaped 3-D arrays (fast at large batch)

and `name`, the entry point the gate matrices call.

Conventions (row-major throughout, a batch of b rows): A (r, m1, n1), B (r, m2, n2), W (m1*m2, n1*n2).
With X = x.reshape(b, n1, n2): y = x @ W.T  <=>  Y = A @ X @ B.T (per row and rank term),
dx = dy @ W  <=>  dX = A.T @ dY @ B,  dA = sum_b dY @ (X @ B.T).T,  dB = sum_b dY.T @ (A @ X).

The kernel never reassociates floating-point sums (fastmath stays off), so a loop only vectorises
when its innermost statement is `c[j] += a * r[j]` over a contiguous row ("axpy form"). (Turning
fastmath={"reassoc", "contract"} on for `_kron_fwd` measured no gain, 29.8 against 30.1 us at batch 1
on 2600 x 1300 = (520x260) kron (5x5): axpy loops vectorise without it.) The forward product
contracts over A's column index, which is axpy form only on A.T; the Kronecker matrix therefore
stores its factors transposed (`Kronecker` keeps A as a view of a contiguous (r, n1, m1) array) and
the Numba kernel takes those transposed factors `At`, `Bt`. Any layout works (the wrappers copy when
needed); the stored layout makes the batch-1 forward copy-free.

The transpose product and the factor gradients are BLAS only: Numba kernels for them contract along
contiguous rows, a reduction Numba cannot vectorise without fastmath (measured 400 us against 41 us
at batch 1), and gradients are taken once per window over batch x timesteps rows, where one large
matmul beats any loop. Those kernels were removed rather than kept unused.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from dkp.kernels.arith import contiguous, factor_shapes, kron_b_first

# The batch size up to which `kron_matmul` uses the Numba kernel. Measured on a 2-core x86 machine,
# float32, 2600x1300 = (520x260) kron (5x5), one BLAS thread: batch 1, Numba 31 us vs BLAS 40 us;
# batch 2, 62 vs 47 us.
KRON_NUMBA_MAX_BATCH = 1


def kron_dense(A, B):
    """The dense W = sum_k A[k] kron B[k] (tests and small diagnostics only)."""
    return sum(np.kron(A[k], B[k]) for k in range(A.shape[0]))


def transposed_factor(F):
    """(r, p, q) factor -> contiguous (r, q, p) array; no copy when F is stored transposed."""
    t = F.transpose(0, 2, 1)
    return t if t.flags.c_contiguous else np.ascontiguousarray(t)


# --- references (the oracle: np.kron and dense products) ------------------------------------

def kron_matmul_ref(A, B, x):
    """y = x @ W.T with W built by np.kron."""
    return x @ kron_dense(A, B).T


def kron_matmul_t_ref(A, B, dy):
    """dx = dy @ W with W built by np.kron."""
    return dy @ kron_dense(A, B)


def kron_grad_ref(A, B, x, dy):
    """(dA, dB) from the dense gradient dW = dy.T @ x, contracted against the other factor."""
    r, m1, n1, m2, n2 = factor_shapes(A, B)
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


# --- Python entry points ---------------------------------------------------------------------

def kron_matmul_numba(A, B, x, out=None, accumulate=False):
    """y = x @ W.T with the Numba kernel; `accumulate` adds into `out` instead of overwriting."""
    r, m1, n1, m2, n2 = factor_shapes(A, B)
    if out is None:
        out = np.empty((x.shape[0], m1 * m2), np.result_type(A.dtype, x.dtype))
    _kron_fwd(transposed_factor(A), transposed_factor(B), contiguous(x), out,
              kron_b_first(m1, n1, m2, n2), m1 >= m2, accumulate)
    return out


def kron_matmul_blas(A, B, x):
    """y = x @ W.T with BLAS: one large matmul per stage (batch folded into the columns)."""
    r, m1, n1, m2, n2 = factor_shapes(A, B)
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


def kron_matmul_t_blas(A, B, dy):
    """dx = dy @ W with BLAS: W.T = sum_k A[k].T kron B[k].T, so this is the forward product with
    the factors transposed (dX = A.T @ dY @ B), in whichever order is cheaper for that shape."""
    return kron_matmul_blas(A.transpose(0, 2, 1), B.transpose(0, 2, 1), dy)


def kron_matmul_t(A, B, dy):
    """dx = dy @ (sum_k A[k] kron B[k]) for dy (b, m1*m2); BLAS at every batch (see the top)."""
    return kron_matmul_t_blas(A, B, dy)


def kron_grad_blas(A, B, x, dy):
    """(dA, dB) with BLAS: each a single large matmul over the whole batch."""
    r, m1, n1, m2, n2 = factor_shapes(A, B)
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
