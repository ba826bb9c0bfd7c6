"""The explorers of dkp.course.widgets, driven without a browser: set widget values from code, as a student
moving a slider would, and check the state, the text shown and the figures (none leaked)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dkp.compression import kron_view, shapes
from dkp.compression.shapes import KronShape, kron_candidates, kron_shape  # noqa: E402
from dkp.course import widgets  # noqa: E402
from dkp.course import diagnostics
from dkp.study import probes

PAPER = (2600, 1300)


@pytest.fixture(autouse=True)
def no_leaked_figures():
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "an explorer left a matplotlib figure open"


# --- the plain functions -----------------------------------------------------------------------

def test_divisors():
    assert shapes.divisors(1) == [1]
    assert shapes.divisors(12) == [1, 2, 3, 4, 6, 12]
    assert shapes.divisors(2600) == sorted(d for d in range(1, 2601) if 2600 % d == 0)
    assert widgets.nearest_divisor(2600, 2600 ** 0.5) == 50   # sqrt(2600) = 50.99
    assert widgets.nearest_divisor(12, 5) == 4          # 4 and 6 are equally close: the smaller
    with pytest.raises(ValueError):
        shapes.divisors(0)


@pytest.mark.parametrize("shape", [PAPER, (256, 128), (12, 6)])
@pytest.mark.parametrize("rank", [1, 3])
def test_state_agrees_with_shapes_for_every_split(shape, rank):
    m, n = shape
    for k in kron_candidates(shape, rank):
        s = kron_view.kron_state(m, n, k.m1, k.n1, k.m2, k.n2, rank)
        assert s.valid and s.kron == k
        assert s.compression == k.compression and s.n_params == k.n_params
        assert s.flops == k.flops == min(s.flops_b_first, s.flops_a_first)
        assert s.max_rank == k.max_rank and s.full_rank == (k.max_rank == min(m, n))
        assert s.speed_bound == pytest.approx(m * n / k.flops)
        assert s.cheaper == ("B first" if s.flops_b_first <= s.flops_a_first else "A first")


def test_paper_state_and_text():
    s = kron_view.kron_state(*PAPER, 520, 260, 5, 5)
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
    s = kron_view.kron_state(*args)
    assert not s.valid and s.compression is None
    for word in words:
        assert word in s.error
    html = widgets.kron_state_html(s)
    assert "Not a Kronecker factorisation" in html and s.error in html


def test_rank_zero_and_needless_rank():
    assert "at least 1" in kron_view.kron_state(16, 8, 4, 2, 4, 4, rank=0).error
    s = kron_view.kron_state(16, 8, 4, 2, 4, 4, rank=9)        # min(m1*n1, m2*n2) = 8
    assert s.valid and "can be written with fewer" in s.note
    assert s.compression == KronShape(4, 2, 4, 4, 9).compression


def test_kron_block_without_forming_the_matrix(rng):
    A, B = rng.standard_normal((7, 5)), rng.standard_normal((3, 4))
    W = np.kron(A, B)
    for rows, cols in [(21, 20), (10, 9), (1, 1), (4, 17)]:
        assert np.array_equal(kron_view.kron_block(A, B, rows, cols), W[:rows, :cols])
    # from top-left blocks of the factors, given B's full shape
    assert np.array_equal(kron_view.kron_block(A[:4, :3], B, 10, 9), W[:10, :9])
    big_B = rng.standard_normal((60, 50))
    W2 = np.kron(A, big_B)
    assert np.array_equal(kron_view.kron_block(A[:1, :1], big_B[:48, :48], 48, 48, (60, 50)), W2[:48, :48])
    with pytest.raises(ValueError, match="do not cover"):
        kron_view.kron_block(A[:2, :2], B, 10, 9)


def test_random_factor_block_is_a_block_of_the_full_seeded_matrix():
    full = np.random.default_rng((3, 0)).standard_normal((520, 260))
    assert np.array_equal(kron_view.random_factor_block((520, 260), (3, 0), 48), full[:48, :48])
    assert kron_view.random_factor_block((5, 5), 1, 48).shape == (5, 5)


def test_display_arrays_are_small_blocks():
    s = kron_view.kron_state(*PAPER, 520, 260, 5, 5)
    A, B, W = kron_view.kron_display_arrays(s, seed=0, max_side=48)
    assert A.shape == (48, 48) and B.shape == (5, 5) and W.shape == (48, 48)
    assert np.allclose(W, np.kron(A, B)[:48, :48])
    s3 = kron_view.kron_state(*PAPER, 520, 260, 5, 5, rank=3)
    _, _, W3 = kron_view.kron_display_arrays(s3, seed=0, max_side=48)
    assert not np.allclose(W3, W)
    with pytest.raises(ValueError):
        kron_view.kron_display_arrays(kron_view.kron_state(*PAPER, 520, 260, 10, 5))


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
    assert list(ex.m1.options) == shapes.divisors(256) and list(ex.n2.options) == shapes.divisors(128)
    assert ex.drawn == ["A (16 x 8)", "B (16 x 16)", "A ⊗ B (256 x 128):\ntop-left 48 x 48"]


def test_choosing_the_paper_split_updates_every_number():
    ex = widgets.KroneckerExplorer()
    ex.hidden.value = 650
    assert ex.shape == PAPER and list(ex.m1.options) == shapes.divisors(2600)
    calls = count_updates(ex)
    ex.m1.value = 520                       # linked: m2 follows
    ex.n1.value = 260
    assert len(calls) == 2                  # one update (one redraw) per move, partner included
    assert (ex.m2.value, ex.n2.value) == (5, 5)
    paper = kron_shape(PAPER, 25)
    assert ex.state.kron == paper and ex.state.compression == paper.compression
    assert f"{paper.compression:.4g}x" in ex.summary.value
    assert f"{paper.flops:,} ← cheaper" in ex.summary.value
    assert "520 x 260" in ex.drawn[0] and "48 x 48" in ex.drawn[0] and "5 x 5" in ex.drawn[1]
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


# --- the CMA explorer (notebook 05) ----------------------------------------------------------------

import copy  # noqa: E402

from dkp.compression import anneal
from dkp.training.configs import get_config  # noqa: E402
from dkp.training.loop import build_model  # noqa: E402

CMA_BATCH, CMA_BPTT = 5, 10


@pytest.fixture(scope="module")
def doped_model(ptb):
    """A tiny 2-layer doped KP model (H = 8) whose S holds random values at density about 0.2, as if
    trained and annealed: enough for the explorer's arithmetic, no training needed."""
    config = get_config("tiny").with_(hidden=8, layers=2, structure="kp", compression=4, doping=0.05)
    model = build_model(config, len(ptb.vocab), seed=0)
    rng = np.random.default_rng(0)
    for _, W in anneal.doped_layers(model):
        W.params["S"][:] = rng.normal(0.0, 0.3, W.nnz).astype(W.dtype)
        W.set_density(0.2)
    return model


@pytest.fixture(scope="module")
def slice_ids(ptb):
    return ptb.valid[:600]


def snapshot(model):
    """Every array and flag of the model that the explorer must not change."""
    arrays = {k: v.copy() for k, v in model.params.items()}
    for l, layer in enumerate(model.layers):
        arrays.update({f"{l}.{k}": np.array(v, copy=True) for k, v in layer.W.buffers.items()})
    flags = [(layer.W.s_enabled, layer.W.training, layer.W.nnz) for layer in model.layers]
    return arrays, flags


def assert_unchanged(model, snap):
    arrays, flags = snapshot(model)
    assert flags == snap[1]
    assert arrays.keys() == snap[0].keys()
    for k, v in snap[0].items():
        assert np.array_equal(arrays[k], v), k


def independent_ppl(model, ids, density, s_enabled=True):
    """What the explorer should show, computed without it: prune a deep copy with Doped.set_density."""
    clone = copy.deepcopy(model)
    for _, W in anneal.doped_layers(clone):
        if W.density > density:
            W.set_density(density)
    return probes.perplexity(clone, ids, CMA_BATCH, CMA_BPTT, s_enabled=s_enabled)


@pytest.fixture
def cma_explorer(doped_model, slice_ids):
    snap = snapshot(doped_model)
    ex = widgets.CMAExplorer(doped_model, slice_ids, batch=CMA_BATCH, bptt=CMA_BPTT, lowest=0.01, n_options=5)
    yield ex
    assert_unchanged(doped_model, snap)                 # whatever the test did with the explorer


def test_density_options_are_log_spaced_from_the_trained_density():
    opts = diagnostics.density_options(0.01, lowest=0.01, n=5)
    assert opts[0] == 0.01 and opts[-1] == pytest.approx(1e-4)
    assert np.allclose(np.diff(np.log(opts)), np.log(0.01) / 4)
    with pytest.raises(ValueError):
        diagnostics.density_options(0.01, lowest=1.5)


def test_cma_explorer_starts_at_the_trained_density(cma_explorer, doped_model, slice_ids):
    ex = cma_explorer
    assert ex.trained == diagnostics.trained_density(doped_model) == doped_model.layers[0].W.density
    assert ex.density.value == ex.trained and ex.s_on.value and ex.state.valid
    assert ex.state.ppl == probes.perplexity(copy.deepcopy(doped_model), slice_ids, CMA_BATCH, CMA_BPTT)
    assert f"{ex.state.ppl:.2f}" in ex.summary.value
    assert ex.drawn == ["Pruning S further after training", f"Branch outputs, S on at density {ex.trained:.3g}"]
    assert len(ex.state.layers) == 2 and ex.state.nnz == sum(W.nnz for _, W in anneal.doped_layers(doped_model))


def test_lowering_the_density_equals_pruning_a_copy(cma_explorer, doped_model, slice_ids):
    ex = cma_explorer
    for label, d in list(ex.density.options)[1:]:
        ex.density.value = d                              # as a student moving the slider
        assert ex.state.valid and ex.state.density == d
        assert ex.state.ppl == independent_ppl(doped_model, slice_ids, d)
        assert f"{ex.state.ppl:.2f}" in ex.summary.value and ex.drawn[1].endswith(f"{d:.3g}")
    lowest = ex.state
    assert lowest.nnz < ex.state_at(ex.trained).nnz
    dens, ppl = ex.visited()
    assert dens == sorted(d for _, d in ex.density.options) and len(ppl) == len(dens)


def test_branch_statistics_are_those_of_the_pruned_copy(cma_explorer, doped_model, slice_ids):
    ex = cma_explorer
    d = ex.density.options[2][1]
    ex.density.value = d
    clone = copy.deepcopy(doped_model)
    for _, W in anneal.doped_layers(clone):
        W.set_density(d)
    want = probes.branch_statistics(clone, slice_ids, CMA_BATCH, CMA_BPTT)
    assert list(ex.state.layers) == want
    for r in ex.state.layers:
        assert f"{r['sparse_share']:.3f}" in ex.summary.value and 0.0 <= r["sparse_share"] <= 1.0


def test_switching_S_off_equals_perplexity_without_S(cma_explorer, doped_model, slice_ids):
    ex = cma_explorer
    want = probes.perplexity(copy.deepcopy(doped_model), slice_ids, CMA_BATCH, CMA_BPTT, s_enabled=False)
    ex.s_on.value = False
    assert not ex.state.s_enabled and ex.state.ppl == want == ex.s_off
    assert "S switched off" in ex.summary.value and ex.s_on.description == "S off"
    ex.density.value = ex.density.options[-1][1]         # without S the density of S is irrelevant
    assert ex.state.ppl == want
    ex.s_on.value = True
    assert ex.state.ppl == independent_ppl(doped_model, slice_ids, ex.density.value)


def test_a_higher_density_than_trained_is_explained(doped_model, slice_ids):
    snap = snapshot(doped_model)
    s = diagnostics.cma_state(doped_model, slice_ids, 0.5, batch=CMA_BATCH, bptt=CMA_BPTT)
    assert not s.valid and s.ppl is None and "can only be lowered" in s.error and "above the trained" in s.error
    assert "Not possible" in widgets.cma_state_html(s)
    for bad in (0.0, 2.0, "half"):
        assert not diagnostics.cma_state(doped_model, slice_ids, bad).valid
    with pytest.raises(ValueError, match="only be lowered"):
        diagnostics.pruned_copy(doped_model, 0.5)
    assert_unchanged(doped_model, snap)


def test_a_model_without_doping_is_refused(ptb):
    model = build_model(get_config("tiny").with_(hidden=8), len(ptb.vocab), seed=0)
    assert "no doped layer" in diagnostics.cma_state(model, ptb.valid[:100], 0.1).error
    with pytest.raises(ValueError, match="no doped layer"):
        widgets.CMAExplorer(model, ptb.valid[:100])


def test_the_explorer_snapshots_the_model(doped_model, slice_ids):
    """Training (changing) the model afterwards does not change what the explorer shows."""
    model = copy.deepcopy(doped_model)
    ex = widgets.CMAExplorer(model, slice_ids, batch=CMA_BATCH, bptt=CMA_BPTT, n_options=3, draw=False)
    before = ex.state.ppl
    model.layers[0].W.params["S"][:] = 0.0
    ex.cache.clear()
    ex.update()
    assert ex.state.ppl == before and ex.drawn is None


# --- the GroupReduce explorer (notebook 09) --------------------------------------------------------
def test_groupreduce_explorer_follows_its_controls_and_caches():
    rng = np.random.default_rng(0)
    freq = rng.permutation(1.0 / np.arange(1, 201))
    freq /= freq.sum()
    E, D = rng.standard_normal((200, 12)), rng.standard_normal((200, 12))
    from dkp.course.groupreduce_explorer import GroupReduceExplorer

    ex = GroupReduceExplorer({"embedding": E, "softmax": D}, freq, groups=4, compression=4.0)
    assert ex.state.valid and len(ex.state.ranks) == 4
    assert ex.drawn == ["embedding: 4 groups at 4x", "embedding: reconstruction error at 600 parameters"]
    assert "GroupReduce's ranks" in ex.summary.value and "magnitude pruning" in ex.summary.value
    ex.groups.value = 6
    assert len(ex.state.ranks) == 6
    ex.matrix.value = "softmax"
    assert ex.drawn[0] == "softmax: 6 groups at 4x"
    first = ex.state
    ex.matrix.value = "embedding"
    ex.matrix.value = "softmax"
    assert ex.state is first                                     # cached
    ex.compression.value = 30.0
    ex.groups.value = 40                                         # rank 1 in 40 groups exceeds the budget
    assert not ex.state.valid and "Not possible" in ex.summary.value and ex.drawn == []
    plt.close("all")
    with pytest.raises(ValueError, match="at least one"):
        GroupReduceExplorer({}, freq)


# --- readable at JupyterLab's default width --------------------------------------------------------
def _cells(html):
    import re
    return re.findall(r"<(t[hd])( style='[^']*')?>", html)


def test_every_table_cell_of_the_explorers_is_padded(cma_explorer):
    """JupyterLab gives an HTML widget's table cells no padding: unpadded headers run together
    ("layer mean ‖KP x‖ mean ‖S x‖ sparse share"). Every cell the explorers print is spaced."""
    from dkp.compression.groupreduce import budget_state
    from dkp.course.groupreduce_explorer import budget_state_html
    rng = np.random.default_rng(0)
    E, freq = rng.standard_normal((60, 8)), np.sort(rng.pareto(1.0, 60))[::-1] + 1
    texts = [widgets.KroneckerExplorer(draw=False).summary.value, cma_explorer.summary.value,
             budget_state_html(budget_state(E, freq, n_groups=3, compression=2.0))]
    for text in texts:
        cells = _cells(text)
        assert cells and all("padding" in style for _, style in cells), text
    assert "<th style='padding" in cma_explorer.summary.value        # the branch statistics' header


def test_the_hidden_size_dropdown_is_wider_than_its_longest_label():
    ex = widgets.KroneckerExplorer(draw=False)
    longest = max(len(label) for label, _ in ex.hidden.options)
    assert longest >= len("H = 650 (medium): W 2600 x 1300")
    width = ex.hidden.layout.width
    assert width.endswith("ch") and int(width[:-2]) >= longest + len("H") + 4   # the description and the arrow
