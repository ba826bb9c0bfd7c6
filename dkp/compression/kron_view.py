"""A Kronecker product's shape at a glance: its sizes, costs and rank limit (`kron_state`), and the
blocks of its factors and product drawn by the Kronecker explorer. State only; the widget is in
`dkp.course.widgets`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dkp.compression.shapes import KronShape
from dkp.kernels.arith import kron_costs


def gate_shape(hidden):
    """The shape (4H, 2H) of an LSTM gate matrix whose input size equals its hidden size H."""
    return 4 * int(hidden), 2 * int(hidden)


@dataclass(frozen=True)
class KronState:
    """What the Kronecker explorer shows for W (m, n) = sum of `rank` products A (m1, n1) kron B (m2, n2).

    When the combination is invalid, `error` says why and the numbers are None."""
    m: int
    n: int
    m1: int
    n1: int
    m2: int
    n2: int
    rank: int = 1
    error: str | None = None
    note: str | None = None
    kron: KronShape | None = None
    n_params: int | None = None
    dense_params: int | None = None
    compression: float | None = None
    flops_b_first: int | None = None   # multiply-adds per input row: X @ B.T first, then A @ .
    flops_a_first: int | None = None   # A @ X first, then . @ B.T
    cheaper: str | None = None         # "B first" or "A first" (B first on a tie, as dkp.kernels)
    flops: int | None = None           # the cheaper of the two
    dense_flops: int | None = None     # m * n
    speed_bound: float | None = None   # dense_flops / flops: no kernel can beat this ratio
    max_rank: int | None = None        # the largest rank the product can have
    full_rank: bool | None = None      # max_rank == min(m, n)

    @property
    def valid(self):
        return self.error is None


def kron_state(m, n, m1, n1, m2, n2, rank=1):
    """Everything the explorer shows, as numbers (see KronState). Never raises on bad sizes: an
    impossible combination comes back with `error` set."""
    try:
        m, n, m1, n1, m2, n2, rank = (int(v) for v in (m, n, m1, n1, m2, n2, rank))
    except (TypeError, ValueError):
        return KronState(0, 0, 0, 0, 0, 0, 0, error=f"sizes must be integers, got {(m, n, m1, n1, m2, n2, rank)!r}")
    base = dict(m=m, n=n, m1=m1, n1=n1, m2=m2, n2=n2, rank=rank)
    if min(m, n, m1, n1, m2, n2) < 1:
        return KronState(**base, error="every side must be a positive integer")
    if rank < 1:
        return KronState(**base, error=f"the rank (number of products summed) must be at least 1, got {rank}")
    wrong = []
    if m1 * m2 != m:
        wrong.append(f"m1·m2 = {m1}·{m2} = {m1 * m2}, but W has m = {m} rows")
    if n1 * n2 != n:
        wrong.append(f"n1·n2 = {n1}·{n2} = {n1 * n2}, but W has n = {n} columns")
    if wrong:
        return KronState(**base, error=(f"A {m1}x{n1} ⊗ B {m2}x{n2} is {m1 * m2}x{n1 * n2}, not the "
                                        f"{m}x{n} matrix W: " + "; ".join(wrong) + "."))
    k = KronShape(m1, n1, m2, n2, rank)
    cost_b, cost_a = (rank * c for c in kron_costs(m1, n1, m2, n2))
    note = None
    if rank > min(m1 * n1, m2 * n2):
        note = (f"rank {rank} > min(m1·n1, m2·n2) = {min(m1 * n1, m2 * n2)}: any sum of that many "
                f"products can be written with fewer, so the extra terms only cost storage.")
    return KronState(**base, note=note, kron=k, n_params=k.n_params, dense_params=m * n,
                     compression=k.compression, flops_b_first=cost_b, flops_a_first=cost_a,
                     cheaper="B first" if cost_b <= cost_a else "A first", flops=min(cost_b, cost_a),
                     dense_flops=m * n, speed_bound=m * n / min(cost_b, cost_a), max_rank=k.max_rank,
                     full_rank=k.max_rank == min(m, n))


def random_factor_block(shape, seed, max_side):
    """The top-left (min(p, max_side), min(q, max_side)) block of a seeded standard-normal matrix
    of `shape` (p, q): the same numbers as those entries of the full matrix, without drawing it."""
    p, q = shape
    rng = np.random.default_rng(seed)
    return rng.standard_normal((min(p, max_side), q))[:, :min(q, max_side)]


def kron_block(A, B, rows, cols, b_shape=None):
    """W[:rows, :cols] of W = A kron B without forming W: W[i, j] = A[i // m2, j // n2] * B[i % m2, j % n2].

    A and B may be top-left blocks of the factors as long as they cover the entries needed;
    b_shape = (m2, n2) is B's full shape (default: B.shape)."""
    m2, n2 = B.shape if b_shape is None else b_shape
    i, j = np.arange(rows), np.arange(cols)
    if (i[-1] // m2 >= A.shape[0] or j[-1] // n2 >= A.shape[1]
            or min(rows, m2) > B.shape[0] or min(cols, n2) > B.shape[1]):
        raise ValueError(f"the blocks A {A.shape} and B {B.shape} do not cover W[:{rows}, :{cols}] "
                         f"with B of full shape {(m2, n2)}")
    return A[np.ix_(i // m2, j // n2)] * B[np.ix_(i % m2, j % n2)]


def kron_display_arrays(s, seed=0, max_side=48):
    """Seeded random factors for a valid KronState and the top-left blocks to draw: (A, B, W) with
    each side at most `max_side` (a rank-r state draws the sum of r products)."""
    if not s.valid:
        raise ValueError(s.error)
    A = [random_factor_block((s.m1, s.n1), (seed, 2 * k), max_side) for k in range(s.rank)]
    B = [random_factor_block((s.m2, s.n2), (seed, 2 * k + 1), max_side) for k in range(s.rank)]
    rows, cols = min(s.m, max_side), min(s.n, max_side)
    W = sum(kron_block(a, b, rows, cols, (s.m2, s.n2)) for a, b in zip(A, B))
    return A[0], B[0], W
