"""The transformer's figures (dkp.course.figures.attention, notebook 11) draw, carry a title and labelled
axes, and show what they say: the block's branches, the causal mask with the words on its axes and its
count of visible pairs, attention weights blank above the diagonal, the loss with its running mean,
and a Kronecker qkv matrix with the rows of q, k and v marked."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from readable import assert_readable  # noqa: E402

from dkp.course.figures.attention import (draw_transformer_block, plot_attention, plot_causal_mask,  # noqa: E402
                                          plot_kron_qkv, plot_step_losses)

WORDS = ["the", "cat", "sat", "on", "a", "mat", "<eos>"]


pytestmark = pytest.mark.usefixtures("close_figures")      # every figure closed after its test (conftest.py)


def test_the_block_names_its_branches_and_the_tied_softmax():
    ax = draw_transformer_block()
    assert_readable(ax)
    text = " ".join(t.get_text() for t in ax.texts)
    for part in ("LayerNorm ln1", "causal self-attention", "qkv (3H, H)", "LayerNorm ln2", "GELU", "ln_f",
                 "tied softmax", "E[x] + pos", "repeated L times"):
        assert part in text, part


def test_the_causal_mask_has_the_words_on_its_axes_and_counts_the_visible_pairs():
    T = len(WORDS)
    ax = plot_causal_mask(T, WORDS)
    assert_readable(ax)
    assert [t.get_text() for t in ax.get_xticklabels()] == WORDS == [t.get_text() for t in ax.get_yticklabels()]
    shown = ax.images[0].get_array()
    assert np.array_equal(np.asarray(shown, bool), np.tril(np.ones((T, T), bool)))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"({T * (T + 1) // 2} pairs)" in labels[0] and f"({T * (T - 1) // 2})" in labels[1]


def test_attention_weights_one_panel_a_head_blank_above_the_diagonal():
    T = len(WORDS)
    w = np.tril(np.random.default_rng(0).random((2, T, T)))
    w /= w.sum(axis=-1, keepdims=True)
    fig = plot_attention(w, WORDS, title="demo")
    heads = [ax for ax in fig.axes if ax.get_title().startswith("head")]
    assert [ax.get_title() for ax in heads] == ["head 0", "head 1"]
    for h, ax in enumerate(heads):
        assert_readable(ax)
        shown = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
        assert np.all(np.isnan(shown[np.triu_indices(T, 1)]))
        np.testing.assert_allclose(shown[np.tril_indices(T)], w[h][np.tril_indices(T)])
    assert fig._suptitle.get_text() == "demo"
    assert len(plot_attention(w[0], WORDS).axes) == 2             # one head: one panel and its colour bar


def test_step_losses_draw_the_running_mean_and_reference_lines():
    losses = np.linspace(9.0, 6.0, 50)
    ax = plot_step_losses(losses, hlines={"log V": 9.2}, window=10)
    assert_readable(ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "training loss of each step", "running mean over 10 steps", "log V"]
    assert len(ax.lines[1].get_xdata()) == 41 and ax.lines[1].get_xdata()[0] == 10


def test_the_kronecker_qkv_matrix_marks_q_k_and_v():
    rng = np.random.default_rng(0)
    A, B, H = rng.standard_normal((4, 2)), rng.standard_normal((3, 2)), 4
    fig = plot_kron_qkv(A, B, H)
    ax = next(a for a in fig.axes if a.get_title().startswith("W = A ⊗ B"))
    assert_readable(ax)
    np.testing.assert_allclose(ax.images[0].get_array(), np.kron(A, B))
    marked = [line.get_ydata()[0] for line in ax.lines if line.get_color() == "C2"]
    assert marked == [H - 0.5, 2 * H - 0.5]
    assert [t.get_text() for t in ax.texts] == ["q", "k", "v"]
    assert "rows 0..3, 4..7 and 8..11" in fig._suptitle.get_text()
