"""Structure sizes for a target compression, and the cubic schedule."""
import math

import pytest

from dkp.compression import shapes
from dkp.compression.schedules import cubic_schedule

PAPER = (2600, 1300)   # Zaremba medium: 4H x 2H, H = 650


def test_paper_shapes_at_25x():
    k = shapes.kron_shape(PAPER, 25)
    assert (k.m1, k.n1, k.m2, k.n2, k.rank) == (520, 260, 5, 5, 1)
    assert k.max_rank == 1300 and k.n_params == 135_225
    assert shapes.low_rank_rank(PAPER, 25) == 34
    d, r = shapes.hybrid_shape(PAPER, 25)
    assert (d, r) == (52, 17)
    assert shapes.pruning_sparsity(PAPER, 25) == pytest.approx(0.96)


@pytest.mark.parametrize("shape", [PAPER, (800, 400), (600, 300), (1024, 512), (160, 90)])
@pytest.mark.parametrize("target", [2, 10, 25, 40])
def test_every_proposal_meets_its_target(shape, target):
    m, n = shape
    rtol = shapes.RTOL
    k = shapes.kron_shape(shape, target)
    assert k.shape == shape and k.compression >= target * (1 - rtol)
    assert min(k.m1, k.n1, k.m2, k.n2) >= 2
    # as close as possible: no candidate meeting the target is more than 5% closer to it
    lowest = min(c.compression for c in shapes.kron_candidates(shape, 1, 2) if c.compression >= target * (1 - rtol))
    assert k.compression <= lowest * 1.05
    r = shapes.low_rank_rank(shape, target)
    assert m * n / (r * (m + n)) >= target * (1 - rtol) > m * n / ((r + 1) * (m + n))
    d, r = shapes.hybrid_shape(shape, target)
    assert m * n / (d * n + r * (m - d + n)) >= target * (1 - rtol)
    s = shapes.pruning_sparsity(shape, target)
    assert m * n / round((1 - s) * m * n) >= target


def test_paper_split_chosen_for_speed():
    """prefer="flops": the cheapest split at 25x whose rank can reach a quarter of min(m, n)."""
    fast = shapes.kron_shape(PAPER, 25, prefer="flops")
    assert (fast.m1, fast.n1, fast.m2, fast.n2) == (200, 650, 13, 2)
    assert fast.max_rank == 400 and fast.flops == 200 * 2 * (650 + 13)
    assert 2600 * 1300 / fast.flops == pytest.approx(12.75, abs=0.01)
    slow = shapes.kron_shape(PAPER, 25)                   # the default is unchanged
    assert 2600 * 1300 / slow.flops == pytest.approx(4.95, abs=0.01)
    # a lower rank floor admits the cheaper, lower-rank A 1300x100 kron B 2x13 (max rank 200)
    low = shapes.kron_shape(PAPER, 25, prefer="flops", min_rank_fraction=0.1)
    assert (low.m1, low.n1, low.m2, low.n2) == (1300, 100, 2, 13) and low.max_rank == 200
    assert shapes.kron_shape(PAPER, 25, prefer="flops", min_rank_fraction=1.0) == slow
    # passes through the doped budget too
    kd = shapes.kron_shape(PAPER, shapes.structured_target(PAPER, 25, 0.01), prefer="flops")
    assert 2600 * 1300 / (kd.n_params + 33_800) >= 25 * 0.999 and kd.max_rank >= 0.25 * 1300


@pytest.mark.parametrize("shape", [PAPER, (800, 400), (600, 300), (1024, 512), (160, 90)])
@pytest.mark.parametrize("target", [2, 10, 25, 40])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25])
def test_flops_rule_is_the_cheapest_admissible_shape(shape, target, fraction):
    m, n = shape
    k = shapes.kron_shape(shape, target, prefer="flops", min_rank_fraction=fraction)
    assert k.shape == shape and k.compression >= target * (1 - shapes.RTOL)
    assert k.max_rank >= fraction * min(m, n)
    meet = [c for c in shapes.kron_candidates(shape, 1, 2) if c.compression >= target * (1 - shapes.RTOL)]
    lowest = min(c.compression for c in meet)
    ok = [c for c in meet if c.compression <= lowest * 1.05 and c.max_rank >= fraction * min(m, n)]
    assert k.flops == min(c.flops for c in ok)
    assert k.flops <= shapes.kron_shape(shape, target).flops     # never slower than the default


def test_rank_two_kronecker_and_doped_budget():
    k2 = shapes.kron_shape(PAPER, 25, rank=2)
    assert k2.rank == 2 and k2.compression >= 25 * 0.999
    kd = shapes.kron_shape(PAPER, shapes.structured_target(PAPER, 25, 0.01))
    assert 2600 * 1300 / (kd.n_params + 33_800) >= 25 * 0.999


@pytest.mark.parametrize("call, match", [
    (lambda: shapes.kron_shape(PAPER, 1e6), "above the maximum"),
    (lambda: shapes.kron_shape(PAPER, 0.5), "target must be a compression factor >= 1"),
    (lambda: shapes.kron_shape(PAPER, float("inf")), "target"),
    (lambda: shapes.kron_shape((7, 13), 2), "prime"),
    (lambda: shapes.low_rank_rank((10, 10), 100), "above the maximum"),
    (lambda: shapes.hybrid_shape((10, 10), 100), "impossible"),
    (lambda: shapes.hybrid_shape((100, 10), 5, n_dense_rows=60), "dense rows alone"),
    (lambda: shapes.pruning_sparsity((10, 10), 1000), "no entry"),
    (lambda: shapes.structured_target(PAPER, 25, 0.05), "doping density"),
    (lambda: shapes.kron_shape((0, 5), 2), "shape"),
    (lambda: shapes.kron_shape(PAPER, 25, prefer="speed"), "prefer must be one of"),
    (lambda: shapes.kron_shape(PAPER, 25, prefer="flops", min_rank_fraction=1.5), "min_rank_fraction"),
    (lambda: shapes.kron_shape((600, 300), 40, prefer="flops", min_rank_fraction=0.5), "reaches rank"),
])
def test_impossible_requests_explain_why(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_cubic_schedule():
    assert cubic_schedule(0, 10, 110, 1.0, 0.01) == 1.0
    assert cubic_schedule(10, 10, 110, 1.0, 0.01) == 1.0
    assert cubic_schedule(500, 10, 110, 1.0, 0.01) == 0.01
    assert math.isclose(cubic_schedule(60, 10, 110, 1.0, 0.01), 0.01 + 0.99 * 0.125)
    sparsity = [cubic_schedule(t, 0, 100, 0.0, 0.96) for t in range(101)]
    assert all(a < b for a, b in zip(sparsity, sparsity[1:]))          # monotone
    steps = [b - a for a, b in zip(sparsity, sparsity[1:])]
    assert all(a > b for a, b in zip(steps, steps[1:]))                # fast first, slow at the end
    with pytest.raises(ValueError, match="end must be after start"):
        cubic_schedule(0, 5, 5, 0.0, 0.5)
