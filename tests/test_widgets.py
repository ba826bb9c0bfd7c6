"""The explorers of dkp.widgets, driven without a browser: set widget values from code, as a student
moving a slider would, and check the state, the text shown and the figures (none leaked)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dkp import widgets  # noqa: E402
from dkp.shapes import KronShape, kron_candidates, kron_shape  # noqa: E402

PAPER = (2600, 1300)


@pytest.fixture(autouse=True)
def no_leaked_figures():
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "an explorer left a matplotlib figure open"


# --- the plain functions -----------------------------------------------------------------------

def test_divisors():
    assert widgets.divisors(1) == [1]
    assert widgets.divisors(12) == [1, 2, 3, 4, 6, 12]
    assert widgets.divisors(2600) == sorted(d for d in range(1, 2601) if 2600 % d == 0)
    assert widgets.nearest_divisor(2600, 2600 ** 0.5) == 50   # sqrt(2600) = 50.99
    assert widgets.nearest_divisor(12, 5) == 4          # 4 and 6 are equally close: the smaller
    with pytest.raises(ValueError):
        widgets.divisors(0)


@pytest.mark.parametrize("shape", [PAPER, (256, 128), (12, 6)])
@pytest.mark.parametrize("rank", [1, 3])
def test_state_agrees_with_shapes_for_every_split(shape, rank):
    m, n = shape
    for k in kron_candidates(shape, rank):
        s = widgets.kron_state(m, n, k.m1, k.n1, k.m2, k.n2, rank)
        assert s.valid and s.kron == k
        assert s.compression == k.compression and s.n_params == k.n_params
        assert s.flops == k.flops == min(s.flops_b_first, s.flops_a_first)
        assert s.max_rank == k.max_rank and s.full_rank == (k.max_rank == min(m, n))
        assert s.speed_bound == pytest.approx(m * n / k.flops)
        assert s.cheaper == ("B first" if s.flops_b_first <= s.flops_a_first else "A first")


def test_paper_state_and_text():
    s = widgets.kron_state(*PAPER, 520, 260, 5, 5)
    assert s.kron == kron_shape(PAPER, 25)
    assert (s.flops_b_first, s.flops_a_first, s.cheaper) == (682_500, 689_000, "B first")
    assert s.max_rank == 1300 and s.full_rank and s.dense_flops == 3_380_000
    html = widgets.kron_state_html(s)
    assert f"{s.compression:.4g}x" in html and "682,500 ← cheaper" in html and "689,000<" in html
    assert "1,300 of min(m, n) = 1,300 (full rank possible)" in html


@pytest.mark.parametrize("args, words", [
    ((2600, 1300, 520, 260, 10, 5), ["m1·m2 = 520·10 = 5200", "m = 2600 rows"]),
    ((2600, 1300, 520, 260, 5, 7), ["n1·n2 = 260·7 = 1820", "n = 1300 columns"]),
    ((16, 8, 0, 2, 4, 4), ["positive"]),
    ((16, 8, "four", 2, 4, 4), ["integers"]),
])
def test_invalid_combinations_explain_instead_of_raising(args, words):
    s = widgets.kron_state(*args)
    assert not s.valid and s.compression is None
    for word in words:
        assert word in s.error
    html = widgets.kron_state_html(s)
    assert "Not a Kronecker factorisation" in html and s.error in html


def test_rank_zero_and_needless_rank():
    assert "at least 1" in widgets.kron_state(16, 8, 4, 2, 4, 4, rank=0).error
    s = widgets.kron_state(16, 8, 4, 2, 4, 4, rank=9)        # min(m1*n1, m2*n2) = 8
    assert s.valid and "can be written with fewer" in s.note
    assert s.compression == KronShape(4, 2, 4, 4, 9).compression


def test_kron_block_without_forming_the_matrix(rng):
    A, B = rng.standard_normal((7, 5)), rng.standard_normal((3, 4))
    W = np.kron(A, B)
    for rows, cols in [(21, 20), (10, 9), (1, 1), (4, 17)]:
        assert np.array_equal(widgets.kron_block(A, B, rows, cols), W[:rows, :cols])
    # from top-left blocks of the factors, given B's full shape
    assert np.array_equal(widgets.kron_block(A[:4, :3], B, 10, 9), W[:10, :9])
    big_B = rng.standard_normal((60, 50))
    W2 = np.kron(A, big_B)
    assert np.array_equal(widgets.kron_block(A[:1, :1], big_B[:48, :48], 48, 48, (60, 50)), W2[:48, :48])
    with pytest.raises(ValueError, match="do not cover"):
        widgets.kron_block(A[:2, :2], B, 10, 9)


def test_random_factor_block_is_a_block_of_the_full_seeded_matrix():
    full = np.random.default_rng((3, 0)).standard_normal((520, 260))
    assert np.array_equal(widgets.random_factor_block((520, 260), (3, 0), 48), full[:48, :48])
    assert widgets.random_factor_block((5, 5), 1, 48).shape == (5, 5)


def test_display_arrays_are_small_blocks():
    s = widgets.kron_state(*PAPER, 520, 260, 5, 5)
    A, B, W = widgets.kron_display_arrays(s, seed=0, max_side=48)
    assert A.shape == (48, 48) and B.shape == (5, 5) and W.shape == (48, 48)
    assert np.allclose(W, np.kron(A, B)[:48, :48])
    s3 = widgets.kron_state(*PAPER, 520, 260, 5, 5, rank=3)
    _, _, W3 = widgets.kron_display_arrays(s3, seed=0, max_side=48)
    assert not np.allclose(W3, W)
    with pytest.raises(ValueError):
        widgets.kron_display_arrays(widgets.kron_state(*PAPER, 520, 260, 10, 5))


# --- the explorer, driven like a student would ----------------------------------------------

def count_updates(explorer):
    calls = []
    original = explorer.update

    def counted():
        calls.append(1)
        return original()
    explorer.update = counted
    return calls


def test_explorer_starts_valid_with_a_balanced_split():
    ex = widgets.KroneckerExplorer()                                  # H = 64: W 256 x 128
    assert ex.shape == (256, 128) and ex.state.valid
    assert (ex.m1.value, ex.n1.value, ex.m2.value, ex.n2.value) == (16, 8, 16, 16)
    assert list(ex.m1.options) == widgets.divisors(256) and list(ex.n2.options) == widgets.divisors(128)
    assert ex.drawn == ["A (16 x 8)", "B (16 x 16)", "A ⊗ B (256 x 128):\ntop-left 48 x 48"]


def test_choosing_the_paper_split_updates_every_number():
    ex = widgets.KroneckerExplorer()
    ex.hidden.value = 650
    assert ex.shape == PAPER and list(ex.m1.options) == widgets.divisors(2600)
    calls = count_updates(ex)
    ex.m1.value = 520                       # linked: m2 follows
    ex.n1.value = 260
    assert len(calls) == 2                  # one update (one redraw) per move, partner included
    assert (ex.m2.value, ex.n2.value) == (5, 5)
    paper = kron_shape(PAPER, 25)
    assert ex.state.kron == paper and ex.state.compression == paper.compression
    assert f"{paper.compression:.4g}x" in ex.summary.value
    assert f"{paper.flops:,} ← cheaper" in ex.summary.value
    assert ex.drawn[0] == "A (520 x 260):\ntop-left 48 x 48" and ex.drawn[1] == "B (5 x 5)"
    ex.m2.value = 13                        # moving B's side moves A's
    assert ex.m1.value == 200 and ex.state.kron == KronShape(200, 260, 13, 5)


def test_unlinked_impossible_shapes_show_a_message():
    ex = widgets.KroneckerExplorer(hidden=650, m1=520, n1=260)
    ex.linked.value = False
    ex.m2.value = 10
    assert ex.m1.value == 520 and not ex.state.valid
    assert "5200" in ex.state.error and "Not a Kronecker factorisation" in ex.summary.value
    assert ex.drawn == []
    ex.linked.value = True                  # linking again repairs B
    assert (ex.m2.value, ex.n2.value) == (5, 5) and ex.state.valid


def test_changing_H_offers_new_divisors_and_small_matrices_are_drawn_whole():
    ex = widgets.KroneckerExplorer(hidden=650, m1=520, n1=260)
    ex.hidden.value = 3                     # W 12 x 6
    assert ex.shape == (12, 6) and ex.state.valid
    assert list(ex.m1.options) == [1, 2, 3, 4, 6, 12] and list(ex.n1.options) == [1, 2, 3, 6]
    assert ex.m1.value * ex.m2.value == 12 and ex.n1.value * ex.n2.value == 6
    assert not any("top-left" in t for t in ex.drawn)
    ex.hidden.value = 1500
    assert ex.shape == (6000, 3000) and ex.state.valid


def test_rank_and_seed_controls():
    ex = widgets.KroneckerExplorer(hidden=4, m1=4, n1=2)            # A 4x2, B 4x4
    ex.rank.value = 2
    assert ex.state.kron == KronShape(4, 2, 4, 4, 2) and "sum of 2 products" in ex.drawn[2]
    ex.seed.value = 5
    assert ex.state.valid and ex.state.note is None
    ex.hidden.value = 2                                               # W 8 x 4
    ex.m1.value, ex.n1.value = 2, 2                                   # B 4 x 2: min(m1*n1, m2*n2) = 4
    ex.rank.value = 5
    assert ex.state.valid and "can be written with fewer" in ex.summary.value


def test_explorer_without_drawing_makes_no_figures(monkeypatch):
    made = []
    monkeypatch.setattr(plt, "figure", lambda *a, **k: made.append(1))
    ex = widgets.KroneckerExplorer(hidden=200, draw=False)
    ex.m1.value = 160
    assert made == [] and ex.drawn is None and ex.state.kron.m1 == 160
