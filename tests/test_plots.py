"""Figures carry a title, labelled axes and, with more than one line, a legend."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from readable import assert_readable  # noqa: E402

from dkp.course.figures.curves import plot_training_curves  # noqa: E402

METRICS = {"train_ppl": [800.0, 300.0, 200.0], "valid_ppl": [400.0, 320.0, 290.0]}


def test_training_curves_are_labelled():
    ax = plot_training_curves(METRICS, hlines={"unigram": 685.0}, title="demo")
    assert_readable(ax)
    assert ax.get_title() == "demo" and len(ax.get_legend().get_texts()) == 3   # two curves and the line
    assert list(ax.lines[1].get_xdata()) == [1, 2, 3]
    plt.close(ax.figure)


def test_a_single_line_has_no_legend_and_missing_keys_are_skipped():
    ax = plot_training_curves({"valid_ppl": [5.0, 4.0]}, log=False)
    assert len(ax.lines) == 1 and ax.get_legend() is None
    assert_readable(ax)
    plt.close(ax.figure)


def test_kron_heatmaps_are_labelled_and_draw_the_block_grid():
    import numpy as np

    from dkp.course.figures.kronecker import plot_kron_heatmaps

    A, B = np.arange(6.0).reshape(3, 2), np.ones((4, 3))
    fig = plot_kron_heatmaps(A, B)
    heat = [ax for ax in fig.axes if ax.get_title()]
    for ax, shape in zip(heat, ("3 x 2", "4 x 3", "12 x 6")):   # each panel names its shape
        assert_readable(ax)
        assert shape in ax.get_title()
    assert len(heat[2].lines) == 2 + 1          # block boundaries: 2 horizontal, 1 vertical
    assert "12 x 6 from 18 stored numbers" in fig._suptitle.get_text()
    plt.close(fig)
    # blocks of large factors are titled as such
    fig = plot_kron_heatmaps(A, B, shapes=((520, 260), (4, 3)))
    assert "520 x 260" in fig.axes[0].get_title() and "3 x 2" in fig.axes[0].get_title()
    plt.close(fig)


def test_kron_tradeoff_and_error_plots_are_labelled():
    import numpy as np

    from dkp.compression.shapes import kron_candidates, kron_shape
    from dkp.course.figures.kronecker import plot_kron_tradeoff, plot_nearest_kronecker_errors

    shape = (2600, 1300)
    ax = plot_kron_tradeoff(kron_candidates(shape), shape, picks={"rank rule": kron_shape(shape, 25)}, target=25)
    assert_readable(ax)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("A 520x260 ⊗ B 5x5" in t for t in labels) and "target 25x" in labels
    plt.close(ax.figure)
    ranks = np.arange(1, 5)
    left, right = plot_nearest_kronecker_errors(
        {"a": {"rank": ranks, "error": [0.9, 0.5, 0.2, 0.0], "compression": 8 / ranks},
         "b": {"rank": ranks, "error": [0.95, 0.6, 0.3, 0.0], "compression": 8 / ranks, "on_rank_axis": False}},
        title="demo")
    assert_readable(left)
    assert_readable(right)
    assert len(left.lines) == 1 and len(right.lines) == 2 and right.get_legend() is not None
    plt.close(left.figure)


def test_density_plot_is_labelled_with_target_and_window():
    from dkp.course.figures.curves import plot_density

    ax = plot_density({"schedule": ([0, 1, 2], [1.0, 0.1, 0.01]), "recorded": ([0, 1, 2], [1.0, 0.2, 0.01])},
                      target=0.01, window=(0, 2), xlabel="epoch (passes over the training tokens)", title="demo")
    assert_readable(ax)
    assert ax.get_yscale() == "log"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["schedule", "recorded"] and len(legend) == 4       # + the target and the window
    plt.close(ax.figure)
    ax = plot_density({"only": ([0, 1], [1.0, 0.5])})
    assert ax.get_legend() is None and ax.get_title()
    plt.close(ax.figure)


def test_storage_plot_counts_csr_bytes():
    from dkp.core.weights.sparse import csr_nbytes
    from dkp.course.figures.curves import plot_storage

    ax = plot_storage((8, 4), [0.25, 1.0], structured_bytes={"KP": 40})
    csr, dense = ax.lines[0], ax.lines[1]
    assert list(csr.get_ydata()) == [csr_nbytes(8, 8, 4), csr_nbytes(32, 8, 4)] == [8 * 8 + 36, 32 * 8 + 36]
    assert list(dense.get_ydata()) == [128, 128]
    assert_readable(ax)
    assert len(ax.get_legend().get_texts()) == 3
    plt.close(ax.figure)


def test_relative_loss_bars_mark_missing_values():
    from dkp.course.figures.curves import plot_relative_loss

    ax = plot_relative_loss({"paper": {"kp": 1.4, "lmf": 27.0}, "ours": {"kp": 3.0, "lmf": None}}, title="demo")
    assert len(ax.patches) == 3                             # the missing value has no bar
    assert "n/a" in [t.get_text() for t in ax.texts] and "+27.0%" in [t.get_text() for t in ax.texts]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["paper", "ours"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["kp", "lmf"]
    assert_readable(ax)
    plt.close(ax.figure)
    ax = plot_relative_loss({"paper": {"kp": 1.4}})
    assert ax.get_legend() is None
    plt.close(ax.figure)


def test_group_reduce_figures_are_labelled():
    import numpy as np

    from dkp.compression.groupreduce import budget_state
    from dkp.course.figures.groupreduce import plot_budget, plot_zipf

    counts = np.round(1e4 / np.arange(1, 301)).astype(int)
    ax = plot_zipf(counts, fit=(-1.0, 4.0))
    assert_readable(ax)
    assert ax.get_xscale() == ax.get_yscale() == "log" and len(ax.lines) == 2
    plt.close(ax.figure)
    rng = np.random.default_rng(0)
    freq = counts / counts.sum()
    fig = plot_budget(budget_state(rng.standard_normal((300, 8)), freq, 5, 4.0), "embedding")
    left, right = fig.axes[0], fig.axes[1]
    assert_readable(right)
    assert "5 groups at 4x" in left.get_title() and len(left.patches) == 5 and len(right.patches) == 3
    plt.close(fig)


def test_whole_model_figures_shift_students_to_their_switch():
    from dkp.course.figures.whole import plot_from_switch, plot_size_accuracy

    run = lambda v, switch=None: {"valid_ppl": v, **({"switch": {"valid_ppl_after": switch}} if switch else {})}  # noqa: E731
    result = {"experiment": "whole-model", "arms": {
        "doped-kp": {"config": {"dense_warmup": 0.0}, "runs": [run([300.0, 250.0])]},
        "doped-kp-teacher": {"config": {"dense_warmup": 1.0}, "runs": [run([310.0, 240.0, 230.0], 311.0)]}}}
    ax = plot_from_switch(result)
    assert_readable(ax)
    xs = {line.get_label(): list(line.get_xdata()) for line in ax.lines}
    assert xs["doped-kp"] == [1, 2] and xs["doped-kp-teacher (student)"] == [0, 1, 2]
    assert any(list(line.get_ydata()) == [311.0] for line in ax.lines)          # the cross after the switch
    plt.close(ax.figure)
    ax = plot_size_accuracy({"dense": (1.0, 120.0, 3.9), "gr": (11.0, 140.0, None)})
    assert_readable(ax)
    assert len(ax.collections) == 3            # two filled points, one hollow (int8)
    plt.close(ax.figure)
