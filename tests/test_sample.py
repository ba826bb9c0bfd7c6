"""Sampling: the forward pass without targets gives the logits behind the loss, seeded reproducibility, ids in the vocabulary,
temperature -> 0 is the argmax, draws follow softmax(scores / temperature), bad arguments named."""
import numpy as np
import pytest

from dkp.core.data import Vocab
from dkp.core.model import LanguageModel
from dkp.core.sample import draw, generate, sample

V, H, L = 13, 8, 2


def make(seed=0):
    return LanguageModel(V, H, L, init_scale=0.8, seed=seed, dtype=np.float64)


def test_forward_without_targets_gives_the_logits_behind_the_loss():
    model = make()
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (6, 3)), rng.integers(0, V, (6, 3))
    with_targets = model.forward(x, model.zero_state(3), y)
    loss, final, cache = with_targets.loss, with_targets.state, with_targets.cache
    scores, no_loss, state, no_cache = model.forward(x, model.zero_state(3))
    assert no_loss is None and no_cache is None
    np.testing.assert_array_equal(scores, with_targets.logits)
    assert scores.shape == (6, 3, V)
    logp = scores - scores.max(axis=2, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=2, keepdims=True))
    np.testing.assert_allclose(np.exp(logp).reshape(-1, V), cache["probs"] / cache["sums"][:, None],
                               rtol=1e-12, atol=1e-15)
    assert abs(-np.take_along_axis(logp, y[..., None], axis=2).mean() - loss) < 1e-12
    for (h, c), (h2, c2) in zip(final, state):
        np.testing.assert_array_equal(h, h2)
        np.testing.assert_array_equal(c, c2)


def test_same_seed_same_tokens_and_ids_in_vocab():
    model = make()
    a = sample(model, [1, 2, 3], 40, temperature=1.0, seed=7)
    b = sample(model, [1, 2, 3], 40, temperature=1.0, seed=7)
    c = sample(model, [1, 2, 3], 40, temperature=1.0, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.int64 and a.shape == (40,)
    assert a.min() >= 0 and a.max() < V
    assert len(sample(model, [0], 0)) == 0


def test_temperature_to_zero_is_the_argmax():
    model = make(seed=3)
    greedy = sample(model, [4], 25, temperature=0.0)
    np.testing.assert_array_equal(sample(model, [4], 25, temperature=1e-6, seed=1), greedy)
    # the same greedy continuation, token by token, from the model's own forward pass
    state, tok, expected = model.zero_state(1), 4, []
    for _ in range(25):
        _, _, state, cache = model.forward(np.array([[tok]]), state, np.array([[0]]))
        tok = int(np.argmax(cache["probs"][0]))
        expected.append(tok)
    np.testing.assert_array_equal(greedy, expected)


def test_draws_follow_the_tempered_softmax():
    scores = np.array([2.0, 0.0, -1.0, 1.0, -50.0])
    rng = np.random.default_rng(0)
    for temperature in (1.0, 0.5, 2.0):
        counts = np.bincount([draw(scores, temperature, rng) for _ in range(20_000)], minlength=5)
        p = np.exp(scores / temperature)
        p /= p.sum()
        # binomial standard error of 20,000 draws is below 0.0036; allow about 4 of them
        np.testing.assert_allclose(counts / 20_000, p, atol=0.015)
        assert counts[4] == 0


def test_generate_writes_one_sentence_a_line():
    vocab = Vocab(["<eos>", "<unk>", "the", "cat", "sat"] + [f"w{i}" for i in range(V - 5)])
    model = make()
    text = generate(model, vocab, "the cat", n_tokens=60, temperature=1.0, seed=2)
    words = text.split()
    assert "<eos>" not in words and all(w in vocab.stoi for w in words)
    n_eos = int((sample(model, vocab.encode(["the", "cat"]), 60, 1.0, seed=2) == 0).sum())
    assert text.count("\n") in (n_eos - 1, n_eos)  # a trailing <eos> leaves no empty last line


def test_bad_arguments_are_named():
    model = make()
    with pytest.raises(ValueError, match="non-empty 1-D"):
        sample(model, [], 5)
    with pytest.raises(ValueError, match=r"prompt ids must lie in \[0, 13\)"):
        sample(model, [13], 5)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample(model, [1], 5, temperature=-1.0)
    with pytest.raises(ValueError, match="n_tokens must be >= 0"):
        sample(model, [1], -1)
