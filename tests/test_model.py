"""The whole language model against finite differences (float64): every parameter entry on a small
model, and random directions through all parameters at once, with dropout on (fixed masks)."""
import numpy as np
import pytest

from dkp.core.gradcheck import directional, entrywise
from dkp.core.model import LanguageModel, softmax_cross_entropy, softmax_cross_entropy_grad_

V, H, L, T, B = 13, 5, 2, 4, 3


def make(dropout=0.3, seed=0):
    model = LanguageModel(V, H, L, dropout=dropout, init_scale=0.5, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    state = [(rng.standard_normal((B, H)), rng.standard_normal((B, H))) for _ in range(L)]
    scale = float(T)  # the trainer's objective: summed over time, averaged over the batch

    def loss():  # the same dropout masks at every call
        return scale * model.forward(x, state, y, rng=np.random.default_rng(99)).loss

    _, _, _, cache = model.forward(x, state, y, rng=np.random.default_rng(99))
    return model, loss, model.backward(cache, scale=scale)


@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_every_parameter_entry(dropout):
    model, loss, grads = make(dropout)
    params = model.params
    assert set(grads) == set(params)
    for name, p in params.items():
        assert entrywise(loss, p, grads[name]) < 1e-6, name


def test_whole_model_along_random_directions():
    model, loss, grads = make(0.25, seed=3)
    assert directional(loss, model.params, grads, np.random.default_rng(5), n_dirs=4) < 1e-6


def test_directional_check_catches_a_wrong_gradient():
    model, loss, grads = make(0.0)
    grads["lstm1.b"] = grads["lstm1.b"] * 1.05
    assert directional(loss, model.params, grads, np.random.default_rng(5), n_dirs=2) > 1e-4


def test_step_by_step_equals_whole_sequence():
    model = LanguageModel(V, H, L, init_scale=0.5, seed=2, dtype=np.float64)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (7, B)), rng.integers(0, V, (7, B))
    _, loss, final, _ = model.forward(x, model.zero_state(B), y)
    state, losses = model.zero_state(B), []
    for t in range(7):
        _, l1, state, _ = model.forward(x[t:t + 1], state, y[t:t + 1])
        losses.append(l1)
    assert abs(np.mean(losses) - loss) < 1e-13
    for (h, c), (h2, c2) in zip(final, state):
        np.testing.assert_allclose(h2, h, rtol=0, atol=1e-14)
        np.testing.assert_allclose(c2, c, rtol=0, atol=1e-14)


def test_loss_of_uniform_model_is_log_vocab():
    model = LanguageModel(V, H, 1, init_scale=0.0, dtype=np.float64)
    x = np.zeros((2, 2), int)
    _, loss, _, _ = model.forward(x, model.zero_state(2), x)
    assert abs(loss - np.log(V)) < 1e-12


def test_float32_training_dtype():
    model = LanguageModel(V, H, L)
    assert all(p.dtype == np.float32 for p in model.params.values())
    x = np.zeros((2, 2), int)
    _, _, state, cache = model.forward(x, model.zero_state(2), x)
    assert state[0][0].dtype == np.float32
    assert all(g.dtype == np.float32 for g in model.backward(cache).values())


def test_bad_dropout():
    with pytest.raises(ValueError, match="dropout must be in"):
        LanguageModel(V, H, L, dropout=1.0)


def test_backward_refuses_a_used_cache_and_a_forward_without_targets():
    """backward turns the cached softmax into the logits' gradient in place, so a second call on the
    same cache would return wrong gradients: it raises instead; and the first call's gradients equal
    those of a fresh forward."""
    model = LanguageModel(11, 5, 2, seed=3, dtype=np.float64)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 11, (4, 2)), rng.integers(0, 11, (4, 2))
    cache = model.forward(x, model.zero_state(2), y).cache
    first = model.backward(cache)
    with pytest.raises(RuntimeError, match="already used by backward"):
        model.backward(cache)
    again = model.backward(model.forward(x, model.zero_state(2), y).cache)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    with pytest.raises(ValueError, match="forward with targets"):
        model.backward(model.forward(x, model.zero_state(2)).cache)


def grouped_vocab(role, shape, rng, init_scale, dtype):
    """Grouped low-rank embedding and decoder (GroupReduce's storage) for the checks below."""
    from dkp.core.weights import GroupLowRank
    return GroupLowRank.init(shape, (3, 6, 4), (3, 2, 1), rng, init_scale, dtype, order=rng.permutation(shape[0]))


def distilled(seed=0, vocab_factory=grouped_vocab, kl=0.7, hidden=1.3):
    """A student with grouped vocabulary matrices, its loss with a dense teacher's distillation
    terms, and its gradients (float64, dropout on)."""
    from dkp.core.model import dense_vocab
    teacher = LanguageModel(V, H, L, init_scale=0.5, seed=seed + 10, dtype=np.float64, vocab_factory=dense_vocab)
    model = LanguageModel(V, H, L, dropout=0.2, init_scale=0.5, seed=seed, dtype=np.float64,
                          vocab_factory=vocab_factory)
    rng = np.random.default_rng(seed + 1)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    state = [(rng.standard_normal((B, H)), rng.standard_normal((B, H))) for _ in range(L)]
    target, _ = teacher.teacher_outputs(x, teacher.zero_state(B), y, kl, hidden)

    def loss():
        return T * model.forward(x, state, y, rng=np.random.default_rng(99), distill=target).loss

    out = model.forward(x, state, y, rng=np.random.default_rng(99), distill=target)
    return model, loss, out, model.backward(out.cache, scale=T)


def test_grouped_vocabulary_and_distillation_gradients():
    model, loss, out, grads = distilled()
    parts = out.cache["parts"]
    assert parts["kl"] > 0 and parts["hidden"] > 0
    assert abs(out.loss - (parts["task"] + parts["kl"] + parts["hidden"])) < 1e-12
    params = model.params
    assert set(grads) == set(params) and "embed.U2" in params and "dec.V0" in params
    for name, p in params.items():
        assert entrywise(loss, p, grads[name]) < 1e-6, name
    assert directional(loss, params, grads, np.random.default_rng(6), n_dirs=3) < 1e-6


def test_distillation_towards_itself_costs_nothing():
    from dkp.core.model import dense_vocab
    model = LanguageModel(V, H, L, init_scale=0.5, seed=4, dtype=np.float64, vocab_factory=dense_vocab)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    target, _ = model.teacher_outputs(x, model.zero_state(B), y, 1.0, 1.0)
    out = model.forward(x, model.zero_state(B), y, distill=target)
    assert abs(out.cache["parts"]["kl"]) < 1e-12 and out.cache["parts"]["hidden"] == 0.0
    with pytest.raises(ValueError, match="distill needs targets"):
        model.forward(x, model.zero_state(B), distill=target)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_and_its_gradient_against_float64_formulas(dtype):
    """The softmax's two functions against log-softmax written out in float64, on awkward rows:
    large logits (the max shift must prevent overflow), a repeated target, an odd vocabulary."""
    rng = np.random.default_rng(3)
    N, V = 7, 13
    logits = (rng.standard_normal((N, V)) * 30 + 500).astype(dtype)   # exp(500) overflows float32
    y = np.array([0, 12, 5, 5, 1, 12, 6])
    ref = logits.astype(np.float64)
    logp = ref - ref.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))          # (N, V) log-softmax
    e, sums, logp_y = softmax_cross_entropy(logits, y)
    assert e.dtype == sums.dtype == logp_y.dtype == dtype and e.shape == (N, V)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(logp_y, logp[np.arange(N), y], rtol=tol, atol=tol)
    grad = np.exp(logp) * 0.3
    grad[np.arange(N), y] -= 0.2
    out = softmax_cross_entropy_grad_(e, sums, y, 0.3, 0.2)
    assert out is e                                                   # in place
    np.testing.assert_allclose(e, grad, rtol=tol, atol=tol)


def careful_log_softmax(logits):
    """log-softmax of each row in float64 by log-sum-exp (np.logaddexp.reduce): no exponential of a
    shifted logit is ever taken alone, so no row underflows to log(0)."""
    ref = np.asarray(logits, np.float64)
    return ref - np.logaddexp.reduce(ref, axis=1, keepdims=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_at_extreme_logit_gaps(dtype):
    """A target far below its row's maximum (120, 800, 10^4: exp underflows to 0 beyond about 104
    in float32 and 745 in float64) or at the maximum: the loss and its gradient stay finite and equal
    the float64 log-sum-exp reference, softmax - onehot."""
    rng = np.random.default_rng(4)
    V = 11
    gaps = [120.0, 800.0, 1e4, None, None]                 # None: the target is the row's maximum
    y = np.array([3, 0, 10, 7, 2])
    logits = rng.standard_normal((len(gaps), V)) * 3
    for i, gap in enumerate(gaps):
        others = np.delete(logits[i], y[i])
        logits[i, y[i]] = others.max() + 2.0 if gap is None else others.max() - gap
    logits[4, np.arange(V) != y[4]] -= 1e4                 # the maximum alone: p(y) = 1 to rounding
    logits = logits.astype(dtype)
    logp = careful_log_softmax(logits)                     # (N, V) float64
    e, sums, logp_y = softmax_cross_entropy(logits, y)
    assert e.dtype == sums.dtype == logp_y.dtype == dtype
    assert np.isfinite(logp_y).all()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(logp_y, logp[np.arange(len(y)), y], rtol=tol, atol=tol)
    assert -logp_y[2] > 1e4                                # the loss is the gap, not capped
    grad = np.exp(logp) * 0.5
    grad[np.arange(len(y)), y] -= 0.5
    softmax_cross_entropy_grad_(e, sums, y, 0.5, 0.5)
    assert np.isfinite(e).all()
    np.testing.assert_allclose(e, grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype, bias", [(np.float32, -120.0), (np.float64, -800.0)])
def test_model_loss_stays_finite_when_a_target_is_far_below_the_maximum(dtype, bias):
    """A one-layer model whose decoder bias puts every target 120 (float32) or 800 (float64) below
    the other logits: the loss is finite, about -bias + log V, and equals the float64 log-sum-exp
    cross-entropy of the logits it returns; the gradients are finite, the decoder bias's that
    reference's mean softmax - onehot."""
    model = LanguageModel(V, H, 1, init_scale=0.1, seed=1, dtype=dtype)
    model.dec_b[3] = bias
    rng = np.random.default_rng(2)
    x = rng.integers(0, V, (T, B))
    y = np.full((T, B), 3)
    out = model.forward(x, model.zero_state(B), y)
    assert np.isfinite(out.loss)
    logp = careful_log_softmax(out.logits.reshape(T * B, V))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert out.loss == pytest.approx(-logp[:, 3].mean(), rel=tol)
    assert -bias < out.loss < -bias + np.log(V) + 1
    grads = model.backward(out.cache)
    assert all(np.isfinite(g).all() for g in grads.values())
    dref = np.exp(logp)
    dref[:, 3] -= 1.0
    np.testing.assert_allclose(grads["dec_b"], dref.mean(axis=0), rtol=tol, atol=tol)
