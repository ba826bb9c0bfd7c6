"""The numerical claims the notebooks assert, as unit tests, so that no claim rests on a notebook alone.

Claims already covered elsewhere (the notebooks cite these tests next to their asserts):
  PTB token counts and vocabulary (00, 01)      tests/test_data.py::test_ptb_word_counts
  character-level PTB (00, with FULL = True)    tests/test_data.py::test_ptb_char_level
  unigram perplexity is the bar (01)            tests/test_data.py::test_unigram_perplexity_is_the_bar
  y is x shifted by one, windows tile (01)      tests/test_data.py::test_bptt_windows_cover_the_stream_with_shifted_targets
  every parameter entry, small model (01)       tests/test_model.py::test_every_parameter_entry
  first epoch far below the unigram model (01)  tests/test_train.py::test_short_training_beats_the_unigram_model
  sampling: seeded, in vocabulary, argmax (01)  tests/test_sample.py
The tests below cover the rest, with the notebook's own sizes.
"""
import numpy as np
import pytest

from dkp.configs import get_config
from dkp.data import batchify, bptt_windows
from dkp.gradcheck import directional
from dkp.model import LanguageModel
from dkp.train import build_model


def ptb_window(ptb, T=20, B=20):
    return next(bptt_windows(batchify(ptb.train, B), T))


def n_params_formula(V, H, L):
    """Embedding V*H + decoder V*H + V, and per layer a (4H, 2H) gate matrix and a 4H bias."""
    return 2 * V * H + V + L * (4 * H * 2 * H + 4 * H)


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_parameter_count_formula(name):
    config = get_config(name)
    model = build_model(config, 10_000, seed=0)
    n_total = sum(p.size for p in model.params.values())
    assert n_total == n_params_formula(10_000, config.hidden, config.layers)
    assert config.layers * 4 * config.hidden * 2 * config.hidden < n_total / 2  # embedding + decoder dominate


def test_fresh_model_loss_is_near_log_vocab(ptb):
    """01: a freshly initialised tiny model is nearly uniform over the vocabulary; its cache."""
    x, y = ptb_window(ptb)
    model = LanguageModel(len(ptb.vocab), 64, 1, seed=0)
    loss, _, cache = model.forward(x, y, model.zero_state(20))
    assert abs(loss - np.log(len(ptb.vocab))) < 0.05
    assert len(cache["steps"][0]) == 20 and cache["probs"].shape == (20 * 20, len(ptb.vocab))


def ptb_sized_problem(ptb):
    """01's whole-model check: the real vocabulary, 2 x 32 LSTM, dropout on, a PTB window (5, 4)."""
    x, y = ptb_window(ptb)
    x, y = x[:5, :4], y[:5, :4]
    model = LanguageModel(len(ptb.vocab), 32, 2, dropout=0.25, init_scale=0.1, seed=0, dtype=np.float64)

    def loss():
        return 5 * model.forward(x, y, model.zero_state(4), rng=np.random.default_rng(99))[0]

    _, _, cache = model.forward(x, y, model.zero_state(4), rng=np.random.default_rng(99))
    return model, loss, model.backward(cache, scale=5)


def test_directional_check_of_a_ptb_sized_model(ptb):
    model, loss, grads = ptb_sized_problem(ptb)
    assert directional(loss, model.params, grads, np.random.default_rng(5), n_dirs=3) < 1e-6
    wrong = {**grads, "lstm1.W": grads["lstm1.W"] * 1.01}  # one gradient 1% off
    assert directional(loss, model.params, wrong, np.random.default_rng(5), n_dirs=3) > 1e-5


def test_step_by_step_equals_whole_window_on_ptb(ptb):
    x, y = ptb_window(ptb)
    x, y = x[:, :4], y[:, :4]
    model = LanguageModel(len(ptb.vocab), 32, 2, seed=0, dtype=np.float64)
    loss, final, _ = model.forward(x, y, model.zero_state(4))
    state, losses = model.zero_state(4), []
    for t in range(len(x)):
        step_loss, state, _ = model.forward(x[t:t + 1], y[t:t + 1], state)
        losses.append(step_loss)
    assert abs(np.mean(losses) - loss) < 1e-12
    assert max(float(np.abs(a - b).max()) for s, f in zip(state, final) for a, b in zip(s, f)) < 1e-12
