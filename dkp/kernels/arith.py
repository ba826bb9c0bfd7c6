"""Pure arithmetic shared by the kernels (no Numba): the Kronecker product's cost in each order,
its factor shapes, and the array layouts the kernels expect."""
from __future__ import annotations

import numpy as np


def kron_costs(m1, n1, m2, n2):
    """Multiply-adds per row and rank term: (B first: X @ B.T then A @ ., A first: A @ X then . @ B.T)."""
    return n1 * m2 * (n2 + m1), m1 * n2 * (n1 + m2)


def kron_b_first(m1, n1, m2, n2):
    """True when multiplying by B first is no more expensive than by A first."""
    cost_b, cost_a = kron_costs(m1, n1, m2, n2)
    return cost_b <= cost_a


def factor_shapes(A, B):
    """Shapes of 3-D Kronecker factors A (r, m1, n1), B (r, m2, n2): (r, m1, n1, m2, n2)."""
    r, m1, n1 = A.shape
    _, m2, n2 = B.shape
    return r, m1, n1, m2, n2


def contiguous(x):
    """x itself when C-contiguous, else a C-contiguous copy."""
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def as_unsigned(a):
    """Non-negative int32 index array -> its uint32 view (no copy); other int arrays are converted."""
    return a.view(np.uint32) if a.dtype == np.int32 else a.astype(np.uint32)
