"""The course's drawn diagrams (dkp.course.figures.diagrams) draw, carry a title and labelled axes,
and say what they show: the LSTM cell's gates and state, the BPTT windows, the Kronecker blocks, the
doped matrix's two parts."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from readable import assert_readable  # noqa: E402

from dkp.course.figures.diagrams import draw_bptt_windows, draw_doped_matrix, draw_kron_blocks, draw_lstm_cell  # noqa: E402


def texts(ax):
    return " ".join(t.get_text() for t in ax.texts)


pytestmark = pytest.mark.usefixtures("close_figures")      # every figure closed after its test (conftest.py)


def test_the_lstm_cell_names_the_four_gates_and_the_state():
    ax = draw_lstm_cell()
    assert_readable(ax)
    words = texts(ax)
    for part in ("input gate", "forget gate", "candidate", "output gate", "c_{t-1}", "c_t", "h_t", "h_{t-1}", "x_t"):
        assert part in words, part


def test_the_bptt_windows_tile_the_stream_and_say_the_state_is_carried():
    ax = draw_bptt_windows(steps=13, batch=3, bptt=4)
    assert_readable(ax)
    words = texts(ax)
    assert words.count("window ") == 3 and "y rows 1..4" in words and "x rows 8..11" in words
    assert words.count("carried") == 2                        # between windows, not after the last
    assert len(ax.patches) == 3


def test_the_kron_blocks_hold_each_scaled_copy_of_b():
    A, B = np.array([[1, 2, 0], [0, 1, 3]]), np.array([[1, -1], [2, 1]])
    ax = draw_kron_blocks(A, B)
    assert_readable(ax)
    words = texts(ax)
    assert words.count("B =") == 6 and "A_{12} B = 3" in words
    np.testing.assert_array_equal(ax.images[0].get_array(), np.kron(A, B))


def test_the_doped_matrix_is_a_structured_part_plus_a_sparse_overlay():
    fig = draw_doped_matrix(density=0.05, seed=1)
    assert fig._suptitle is not None and "A (6 x 4)" in fig._suptitle.get_text()
    kp, s, w = (ax.images[0].get_array() for ax in fig.axes[:3])
    kept = ~np.isnan(np.asarray(s, float))
    assert 0 < kept.mean() <= 0.06
    np.testing.assert_allclose(np.asarray(w), np.asarray(kp) + np.where(kept, np.asarray(s), 0.0))
    for ax in fig.axes[:3]:
        assert_readable(ax)
