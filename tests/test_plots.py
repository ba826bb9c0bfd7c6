"""Figures carry a title, labelled axes and, with more than one line, a legend."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from dkp.plots import plot_training_curves  # noqa: E402

METRICS = {"train_ppl": [800.0, 300.0, 200.0], "valid_ppl": [400.0, 320.0, 290.0]}


def test_training_curves_are_labelled():
    ax = plot_training_curves(METRICS, hlines={"unigram": 685.0}, title="demo")
    assert ax.get_title() == "demo"
    assert "epoch" in ax.get_xlabel() and "perplexity" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "train (running, during the epoch)", "validation (end of epoch)", "unigram"]
    assert list(ax.lines[1].get_xdata()) == [1, 2, 3]
    plt.close(ax.figure)


def test_a_single_line_has_no_legend_and_missing_keys_are_skipped():
    ax = plot_training_curves({"valid_ppl": [5.0, 4.0]}, log=False)
    assert len(ax.lines) == 1 and ax.get_legend() is None
    assert ax.get_title() and ax.get_ylabel() == "perplexity (per word)"
    plt.close(ax.figure)
