"""The claims notebooks 05 (co-matrix adaptation) and 06 (co-matrix dropout) assert, as unit tests, with
the notebooks' own sizes where they are cheap, and the figures and tables they draw (dkp/course/figures/cma.py).

Notebook assert                                                        test
05  toy branches: S = 0 carries nothing; S = -(A kron B): cosine -1,    test_branch_numbers_of_the_three_toy_cases
    share 1/2, W x = 0
05  the CMA record follows the anneal: density 1 -> round(target m n)   test_the_cma_record_follows_the_anneal
    / (m n), non-increasing, frozen at the end; shares in [0, 1],
    cosines in [-1, 1]
05  the explorer shows perplexity(pruned copy), S off ==               tests/test_widgets.py::
    perplexity(s_enabled=False), the model is left unchanged              test_lowering_the_density_equals_pruning_a_copy,
                                                                          test_switching_S_off_equals_perplexity_without_S,
                                                                          the cma_explorer fixture (model unchanged)
06  CMR by construction: kept entries scaled by exactly 1 / (1 - p),    test_cmr_variants_by_construction
    evaluation == (A kron B + S) x, branch all or nothing, branch and
    connect one mask per minibatch, output not
06  keep rates within 4 standard deviations of 1 - p                    test_cmr_keep_rates
06  the cmr arms differ only in cmr_p and cmr_variant                   test_cmr_arms_differ_only_in_dropout

Nothing here asserts that co-matrix adaptation, or CMR's benefit, appears in a run: that is an
empirical question the notebooks leave to the study's engine (effect E3) on the full results.
"""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dkp.compression.shapes import kron_shape  # noqa: E402
from dkp.core.weights import Doped, Kronecker  # noqa: E402
from dkp.course import series  # noqa: E402
from dkp.course import diagnostics
from dkp.study.catalog import arms, quick
from dkp.study.runner import run_one  # noqa: E402
from dkp.course.figures import cma as cma_figures

SHAPE, DENSITY, P, DRAWS, SEED = (32, 16), 0.25, 0.3, 400, 0      # notebook 06, section 1
VARIANTS = ("output", "branch", "connect")


def doped(variant, p, seed=SEED, density=DENSITY, shape=SHAPE):
    """The matrix of notebook 06: float64 Kronecker (4x) plus a random S at `density`."""
    kp = Kronecker.init(shape, kron_shape(shape, 4), rng=np.random.default_rng(seed), scale=0.5, dtype=np.float64)
    S = np.random.default_rng(seed + 1).standard_normal(shape)
    return Doped(kp, density=density, S=S, cmr_p=p, cmr_variant=variant)


# --- notebook 05 -----------------------------------------------------------------------------------

def branch_numbers(W, x):
    a, s = W.structured_forward(x), W.sparse_forward(x)
    na, ns = np.linalg.norm(a, axis=1), np.linalg.norm(s, axis=1)
    cos = np.sum(a * s, axis=1) / np.maximum(na * ns, 1e-30)
    share = ns ** 2 / np.maximum(na ** 2 + ns ** 2, 1e-30)
    return na.mean(), ns.mean(), share.mean(), cos.mean(), np.linalg.norm(W.forward(x)[0], axis=1).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_branch_numbers_of_the_three_toy_cases(seed):
    rng = np.random.default_rng(seed)
    kp = Kronecker.init(SHAPE, kron_shape(SHAPE, 4), rng=rng, scale=0.5, dtype=np.float64)
    x = rng.standard_normal((200, SHAPE[1]))
    na, ns, share, cos, nw = branch_numbers(Doped(kp, density=1.0, S=np.zeros(SHAPE)), x)
    assert ns == 0 and share == 0 and nw == pytest.approx(na)
    na, ns, share, cos, nw = branch_numbers(Doped(kp, density=1.0, S=-kp.to_dense()), x)
    assert abs(cos + 1) < 1e-12 and abs(share - 0.5) < 1e-12 and nw < 1e-12 * na and ns == pytest.approx(na)
    # switching S off leaves the structured branch alone
    W = Doped(kp, density=1.0, S=-kp.to_dense())
    W.s_enabled = False
    assert np.allclose(W.forward(x)[0], kp.forward(x)[0])


@pytest.fixture(scope="module")
def tiny_runs():
    """One run each of the cmr experiment's doped-kp and output-p0.3 arms, shrunk to seconds (H = 20,
    the smallest whose 80 x 40 gate matrix has a Kronecker split for the doped arm; 4,000 training
    tokens): records with the CMA diagnostics, as run_experiment stores them."""
    out = {}
    for arm in ("doped-kp", "output-p0.3"):
        config = quick(arms("cmr")[arm]).with_(hidden=20, train_tokens=4000, eval_tokens=1000)
        out[arm] = (config, run_one(config.to_dict(), 0))
    return out


@pytest.fixture(scope="module")
def tiny_result(tiny_runs):
    return {"experiment": "cmr",
            "arms": {arm: {"config": c.to_dict(), "runs": [r]} for arm, (c, r) in tiny_runs.items()}}


def test_the_cma_record_follows_the_anneal(tiny_runs):
    for config, r in tiny_runs.values():
        m, n = 4 * config.hidden, 2 * config.hidden
        dens = [p["density"] for p in r["cma"]]
        assert len(dens) >= 3 and r["cma"][-1].get("final")
        assert dens[0] == 1.0 and all(b <= a for a, b in zip(dens, dens[1:]))
        assert dens[-1] == dens[-2] == max(1, round(config.doping * m * n)) / (m * n)
        for p in r["cma"]:
            assert p["ppl"] > 1 and p["ppl_s_off"] > 1
            for layer in p["layers"]:
                assert 0.0 <= layer["sparse_share"] <= 1.0 and -1.0 - 1e-9 <= layer["cosine"] <= 1.0 + 1e-9
                assert layer["norm_structured"] >= 0 and layer["norm_sparse"] >= 0


def test_cma_figures_and_tables(tiny_result):
    axes = cma_figures.plot_branch_norms(tiny_result, title="t")
    for ax in axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
    assert len(axes[0].get_lines()) == 4                 # two arms, two branches each
    plt.close("all")
    table = series.cma_table(tiny_result, "doped-kp").splitlines()
    assert len(table) == 1 + len(tiny_result["arms"]["doped-kp"]["runs"][0]["cma"])
    assert series.cma_arms(tiny_result) == ["doped-kp", "output-p0.3"]


def test_cmr_sweep_figure_and_table(tiny_result):
    assert series.cmr_p_sweep(tiny_result) == [(0.0, "doped-kp"), (0.3, "output-p0.3")]
    assert series.cmr_p_sweep(tiny_result, "branch") == [(0.0, "doped-kp")]
    ax = cma_figures.plot_cmr_sweep(tiny_result)
    assert ax.get_title() and "p" in ax.get_xlabel() and "perplexity" in ax.get_ylabel()
    assert len(ax.get_legend().get_texts()) == 2
    plt.close("all")
    rows = series.s_off_table(tiny_result).splitlines()
    assert len(rows) == 3 and rows[1].startswith("doped-kp")
    r = tiny_result["arms"]["doped-kp"]["runs"][0]
    assert f"{r['cma'][-1]['ppl_s_off'] / r['cma'][-1]['ppl']:.2f}" in rows[1]


def test_cma_explorer_figure():
    from dkp.course.diagnostics import CMAState
    layers = ({"layer": 0, "norm_structured": 1.0, "norm_sparse": 0.5, "sparse_share": 0.2, "cosine": -0.1},)
    state = CMAState(0.01, 0.01, True, ppl=100.0, nnz=10, layers=layers)
    fig = cma_figures.plot_cma_explorer(([0.001, 0.01], [150.0, 100.0]), state, 100.0, 300.0, 0.01)
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
    plt.close(fig)


# --- notebook 06 -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stats():
    return {v: diagnostics.cmr_statistics(doped(v, P), draws=DRAWS, seed=SEED) for v in VARIANTS}


def test_cmr_variants_by_construction(stats):
    for v, s in stats.items():
        assert s["p"] == P and s["variant"] == v and s["nnz"] == round(DENSITY * SHAPE[0] * SHAPE[1])
        assert abs(s["scales"][0] * (1 - P) - 1) < 1e-12 and abs(s["scales"][1] * (1 - P) - 1) < 1e-12, v
        assert s["eval_max_diff"] < 1e-12, v
    assert stats["branch"]["all_or_nothing"] and stats["branch"]["shared_in_batch"]
    assert stats["connect"]["shared_in_batch"]
    assert not stats["output"]["shared_in_batch"] and not stats["connect"]["all_or_nothing"]
    assert stats["output"]["branch_keep_rate"] == stats["connect"]["branch_keep_rate"] == 1.0


def test_cmr_keep_rates(stats):
    nnz = stats["output"]["nnz"]
    for rate, n in ((stats["output"]["keep_rate"], DRAWS * 2 * nnz), (stats["connect"]["keep_rate"], DRAWS * nnz),
                    (stats["branch"]["branch_keep_rate"], DRAWS)):
        assert abs(rate - (1 - P)) < 4 * np.sqrt(P * (1 - P) / n)
    # other probabilities and seeds too
    for p in (0.1, 0.5):
        for seed in (1, 2):
            s = diagnostics.cmr_statistics(doped("connect", p, seed=seed), draws=100, seed=seed)
            assert abs(s["keep_rate"] - (1 - p)) < 4 * np.sqrt(p * (1 - p) / (100 * s["nnz"]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_effective_S_without_dropout_is_S(variant):
    W = doped(variant, 0.0)
    eff = diagnostics.effective_S(W, np.random.default_rng(0), repeats=2)
    assert np.allclose(eff, W.sparse_dense(), atol=1e-12)
    W = doped(variant, 0.5)
    assert np.allclose(diagnostics.effective_S(W, np.random.default_rng(0), training=False), W.sparse_dense(), atol=1e-12)
    assert W.training is False                            # the flag is restored


def test_relative_noise_of_element_wise_dropout():
    """sqrt(p / (1 - p)) in expectation: checked loosely, many draws."""
    x = np.random.default_rng(5).standard_normal((20, SHAPE[1]))
    for p in (0.2, 0.5):
        assert diagnostics.relative_noise(doped("output", p), x, draws=300) == pytest.approx(np.sqrt(p / (1 - p)), rel=0.05)
    assert diagnostics.relative_noise(doped("output", 0.0), x, draws=3) < 1e-12     # no dropout: S x (up to round-off)


def test_cmr_noise_figure():
    ax = cma_figures.plot_cmr_noise([0.1, 0.5], {"output": [0.3, 1.0], "branch": [0.3, 1.1]}, title="t")
    assert ax.get_title() == "t" and ax.get_xlabel() and ax.get_ylabel() and len(ax.get_legend().get_texts()) == 3
    plt.close("all")


def test_cmr_arms_differ_only_in_dropout():
    cmr_arms = arms("cmr")
    base = cmr_arms["doped-kp"].to_dict()
    assert base["cmr_p"] == 0.0
    for name, c in cmr_arms.items():
        assert {k for k, v in c.to_dict().items() if base[k] != v} <= {"cmr_p", "cmr_variant"}, name
    assert cmr_arms["doped-kp"] == arms("cma")["doped-kp"]      # the cma arm, shared by both experiments


def test_the_effect_printed_without_data_says_what_is_missing():
    """The course's effect 3, printed by the study's one printer: without the cma record it is
    undecided and names what is not run yet; a decided effect prints its verdict word and numbers."""
    from dkp.study.engine import evaluate, verdict_line
    from dkp.study.plans import course as course_study
    from dkp.study.report import records_of
    missing = {v.id: v for v in evaluate(course_study.hypotheses(), records_of(course_study.STUDY, {}))}["E3"]
    assert missing.holds is None and "cma/doped-kp not run yet" in verdict_line(missing)
    assert verdict_line(missing).startswith("- **E3** without co-matrix dropout, perplexity rises")


def test_untrained_runs_are_those_far_above_the_best_arm():
    from dkp.study.records import untrained_runs

    def arm(*finals):
        runs = [{"seed": i, "final_valid_ppl": v, "valid_ppl": [2 * v, v]} for i, v in enumerate(finals)]
        return {"runs": runs, "summary": {"final_valid_ppl": {"mean": float(np.mean(finals))}}}
    result = {"arms": {"a": arm(190.0, 192.0), "b": arm(195.0, 860.0, 191.0), "c": {"runs": []}}}
    assert untrained_runs(result) == [("b", 1, 860.0, 1720.0)]
    assert untrained_runs(result, factor=5.0) == []
    assert untrained_runs({"arms": {}}) == []

