"""Structure sizes for a target compression factor (dense parameters / stored parameters).

For the paper's gate matrix (2600 x 1300, Zaremba medium) at 25x:

    kron_shape((2600, 1300), 25)   -> A 520x260 kron B 5x5: 135,225 params, 24.995x
    low_rank_rank((2600, 1300), 25) -> 34                    (132,600 params, 25.5x)
    hybrid_shape((2600, 1300), 25)  -> 52 dense rows, rank 17 (133,016 params, 25.4x)
    pruning_sparsity((2600, 1300), 25) -> 0.96              (135,200 kept entries)

How `kron_shape` chooses. A compression c "meets" the target when c >= target * (1 - rtol); the
default rtol = RTOL = 0.5% lets rounding through, as the papers do (520x260 kron 5x5 is 24.995x,
quoted as 25x; nothing strictly above 25x comes closer than 25.995x), and counts the small factor's
own parameters as rounding too (160x100 kron 5x4 is 19.975x of an 800x400 matrix, quoted as 20x).
Among the factor shapes meeting the target (every side >= min_side, default 2, which excludes
degenerate row/column-vector factors), those within `slack` (5%) of the smallest compression that
meets it compete. With prefer="rank" (the default, what the papers do) they compete on, in order:
  1. the largest rank the product can reach, min(m, n, r * min(m1, n1) * min(m2, n2)): a KP is
     worth having over low rank because A kron B can be full rank, so shapes that can are preferred;
  2. the fewest multiply-adds per input row (the cheaper of the two multiplication orders);
  3. the larger factor first (A big, B small, as in the papers).
With prefer="flops" (a split chosen for inference speed) the fewest multiply-adds win among the
shapes whose maximum rank is not degenerate, max_rank >= min_rank_fraction * min(m, n) (default
0.25); ties go to the larger maximum rank, then to the larger factor first. For the paper's matrix
at 25x the two rules give

    prefer="rank":  A 520x260 kron B 5x5,  24.995x, 682,500 multiply-adds a row (dense / KP = 4.95x),
                    max rank 1300 (full)
    prefer="flops": A 200x650 kron B 13x2, 25.995x, 265,200 multiply-adds a row (12.7x), max rank 400

and the only cheaper shape within the slack, A 1300x100 kron B 2x13 (12.9x), reaches rank 200 at
most (0.15 of 1300), so the default fraction excludes it. Whether rank 400 costs accuracy against
rank 1300 is an empirical question the speed rule does not answer. The cheapest 25x shapes of all
(e.g. A 2600x52 kron B 1x25) are rank <= 52 and need min_side=1; `kron_candidates` lists them all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from dkp.core.checks import check_matrix_shape
from dkp.kernels.arith import kron_costs

PREFER = ("rank", "flops")   # kron_shape's two rules (see the module docstring)
RTOL = 5e-3             # a compression within 0.5% under the target meets it (see the module docstring)


def _check_target(target):
    try:
        t = float(target)
    except (TypeError, ValueError):
        raise ValueError(f"target must be a compression factor >= 1, got {target!r}") from None
    if not (math.isfinite(t) and t >= 1.0):
        raise ValueError(f"target must be a compression factor >= 1 (dense params / stored params), got {target!r}")
    return t


def divisors(k):
    """The divisors of a positive integer k, ascending."""
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    small = [d for d in range(1, math.isqrt(k) + 1) if k % d == 0]
    return sorted(set(small + [k // d for d in small]))


@dataclass(frozen=True)
class KronShape:
    """A rank-r Kronecker structure: A (r, m1, n1), B (r, m2, n2)."""
    m1: int
    n1: int
    m2: int
    n2: int
    rank: int = 1

    @property
    def factors(self):
        """((m1, n1), (m2, n2)), as `Kronecker.init` and `compress.nearest_kronecker` take them."""
        return (self.m1, self.n1), (self.m2, self.n2)

    @property
    def shape(self):
        return self.m1 * self.m2, self.n1 * self.n2

    @property
    def n_params(self):
        return self.rank * (self.m1 * self.n1 + self.m2 * self.n2)

    @property
    def compression(self):
        m, n = self.shape
        return m * n / self.n_params

    @property
    def flops(self):
        """Multiply-adds per input row, in the cheaper multiplication order."""
        return self.rank * min(kron_costs(self.m1, self.n1, self.m2, self.n2))

    @property
    def max_rank(self):
        """The largest matrix rank the product can have."""
        m, n = self.shape
        return min(m, n, self.rank * min(self.m1, self.n1) * min(self.m2, self.n2))

    def __str__(self):
        return (f"A {self.m1}x{self.n1} kron B {self.m2}x{self.n2}" + (f" (rank {self.rank})" if self.rank > 1 else "")
                + f": {self.n_params:,} params, {self.compression:.4g}x")


def kron_candidates(shape, rank=1, min_side=1):
    """Every factorisation m = m1*m2, n = n1*n2 with all sides >= min_side, as KronShapes."""
    m, n = check_matrix_shape(shape)
    return [KronShape(m1, n1, m // m1, n // n1, int(rank))
            for m1 in divisors(m) for n1 in divisors(n)
            if min(m1, n1, m // m1, n // n1) >= min_side]


def kron_shape(shape, target, rank=1, *, min_side=2, rtol=RTOL, slack=0.05, prefer="rank",
               min_rank_fraction=0.25):
    """The Kronecker factor shapes (see the module docstring for the rule) for `target`x compression.

    prefer: "rank" (the largest reachable matrix rank first) or "flops" (the fewest multiply-adds
    among shapes with max_rank >= min_rank_fraction * min(m, n))."""
    m, n = check_matrix_shape(shape)
    target = _check_target(target)
    if int(rank) < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    if prefer not in PREFER:
        raise ValueError(f"prefer must be one of {list(PREFER)}, got {prefer!r}")
    if not 0.0 <= min_rank_fraction <= 1.0:
        raise ValueError(f"min_rank_fraction must be in [0, 1], got {min_rank_fraction!r}")
    cands = kron_candidates(shape, rank, min_side)
    if not cands:
        raise ValueError(f"a {m}x{n} matrix has no Kronecker factorisation with every factor side >= "
                         f"{min_side} (m or n is prime or too small); pass min_side=1")
    meet = [c for c in cands if c.compression >= target * (1 - rtol)]
    if not meet:
        best = max(cands, key=lambda c: c.compression)
        raise ValueError(f"target {target:g}x is above the maximum {best.compression:.4g}x reachable for a "
                         f"{m}x{n} matrix with rank-{rank} Kronecker factors of sides >= {min_side} "
                         f"({best})")
    lowest = min(c.compression for c in meet)
    close = [c for c in meet if c.compression <= lowest * (1 + slack)]
    if prefer == "rank":
        return min(close, key=lambda c: (-c.max_rank, c.flops, -c.m1 * c.n1, c.m1))
    floor = min_rank_fraction * min(m, n)
    ok = [c for c in close if c.max_rank >= floor]
    if not ok:
        best = max(close, key=lambda c: c.max_rank)
        raise ValueError(f"no {m}x{n} Kronecker shape within {slack:.0%} of {lowest:.4g}x reaches rank "
                         f"{floor:g} (min_rank_fraction={min_rank_fraction:g} of {min(m, n)}); the highest "
                         f"is {best.max_rank} ({best}): lower min_rank_fraction or use prefer='rank'")
    return min(ok, key=lambda c: (c.flops, -c.max_rank, -c.m1 * c.n1, c.m1))


def structured_target(shape, compression, doping):
    """The compression the structured part must reach so that it plus S's final non-zeros meet
    `compression` overall."""
    m, n = check_matrix_shape(shape)
    budget = m * n / compression - doping * m * n
    if budget <= 0:
        raise ValueError(f"doping density {doping:g} alone stores {doping * m * n:,.0f} entries, more than "
                         f"the {m * n / compression:,.0f} parameters a {compression:g}x compression allows")
    return m * n / budget


def low_rank_rank(shape, target, rtol=RTOL):
    """The largest rank r with m*n / (r*(m + n)) >= target*(1 - rtol), for W = U @ V."""
    m, n = check_matrix_shape(shape)
    target = _check_target(target)
    r = int(m * n / (target * (1 - rtol) * (m + n)))
    if r < 1:
        raise ValueError(f"target {target:g}x is above the maximum {m * n / (m + n):.4g}x of a rank-1 "
                         f"factorisation of a {m}x{n} matrix")
    return r


class HybridShape(NamedTuple):
    n_dense_rows: int
    rank: int


def hybrid_shape(shape, target, *, n_dense_rows=None, dense_share=0.5, rtol=RTOL):
    """Dense rows d and rank r of a hybrid matrix (top d rows dense, the rest U @ V) with
    d*n + r*(m - d + n) <= m*n / (target*(1 - rtol)). By default the dense rows take `dense_share`
    of the parameter budget (rounded down to whole rows) and the rank takes what is left; pass
    n_dense_rows to fix d instead."""
    m, n = check_matrix_shape(shape)
    target = _check_target(target)
    budget = m * n / (target * (1 - rtol))
    rank_of = lambda d: int((budget - d * n) / (m - d + n))  # noqa: E731
    if n_dense_rows is None:
        d = min(int(dense_share * budget / n), m - 1)
        while d > 0 and rank_of(d) < 1:
            d -= 1
    else:
        d = int(n_dense_rows)
        if not 0 <= d < m:
            raise ValueError(f"n_dense_rows must be in [0, {m - 1}], got {n_dense_rows!r}")
    r = rank_of(d)
    if r < 1:
        why = (f"{d} dense rows alone use {d * n:,} of the {budget:,.0f} parameters allowed" if d
               else f"it is above the maximum {m * n / (m + n):.4g}x of a rank-1 factorisation")
        raise ValueError(f"target {target:g}x is impossible for a {m}x{n} hybrid matrix: {why}")
    return HybridShape(d, min(r, m - d, n))


def pruning_sparsity(shape, target):
    """Sparsity 1 - k/(m*n) with k = floor(m*n / target) kept entries (non-zeros; CSR indices add
    to the bytes, not to this count)."""
    m, n = check_matrix_shape(shape)
    target = _check_target(target)
    k = int(m * n / target * (1 + 1e-12))
    if k < 1:
        raise ValueError(f"target {target:g}x would keep no entry of a {m}x{n} matrix (at most {m * n}x)")
    return 1.0 - k / (m * n)


def vocab_kron_factors(shape, compression):
    """KroneckerBERT's embedding of a (V, H) matrix: A (V, H / n) kron B (1, n), B one row of n
    numbers shared by every word, n = `compression` (about the factor it saves: V H / (V H / n + n)).
    Returns ((V, H / n), (1, n)); n must be a whole number > 1 dividing H."""
    V, H = shape
    if compression != int(compression) or int(compression) < 2 or H % int(compression):
        raise ValueError(f"vocab_compression {compression:g} with vocab_structure 'kp' is the length of B's one "
                         f"row: a whole number > 1 dividing the width {H}")
    n = int(compression)
    return (V, H // n), (1, n)
