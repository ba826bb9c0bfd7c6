"""The transformer language model (dkp.core.transformer) and its layers against finite differences
(float64, dropout on with fixed masks): LayerNorm, GELU, the causal attention, one block, and the
whole model for every structure of its gate matrices and vocabulary matrices, tied and untied.
Then causality, generation with the key/value cache against the full forward, the LSTM model's
contract (sampler, evaluation, optimizers, checkpoints), float32, and errors that name the argument."""
import math

import numpy as np
import pytest

from dkp.compression.structures import gate_factory
from dkp.core.attention import CausalSelfAttention, attend, attend_backward, causal_mask
from dkp.core.gradcheck import directional, entrywise
from dkp.core.layers import LayerNorm, Linear, gelu, gelu_backward
from dkp.core.transformer import Block, TransformerLM
from dkp.core.weights import Dense, Doped, GroupLowRank, Hybrid, Kronecker, LowRank, Pruned
from dkp.training.configs import get_config

V, H, NH, L, BS, T, B = 13, 8, 2, 2, 8, 5, 3
# Directional checks step every parameter at once (~2,000 of them) along a standard normal direction:
# at eps = 1e-5 the central difference's own truncation error (eps^2 f''') reaches 1.4e-6 on these
# models (the tied low-rank one: 1.4e-4, 1.4e-6, 1.4e-8 at eps 1e-4, 1e-5, 1e-6, falling as eps^2);
# at 1e-6 it is ~1e-8 and round-off ~1e-10.
EPS = 1e-6


def ids(rng, shape):
    return rng.integers(0, V, shape)


def perturbed(model, seed=0):
    """`model` with its biases, LayerNorm gains and offsets and positions moved off their start
    (zeros and ones would hide a wrong gradient that is right only there)."""
    rng = np.random.default_rng(seed + 100)
    matrix_params = {id(p) for M in model.matrices.values() for p in M.params.values()}
    for p in model.params.values():
        if id(p) not in matrix_params:
            p += rng.uniform(-0.5, 0.5, p.shape)
    return model


def grouped_vocab(role, shape, rng, init_scale, dtype):
    return GroupLowRank.init(shape, (3, 6, 4), (3, 2, 1), rng, init_scale, dtype, order=rng.permutation(shape[0]))


def kron_decoder(role, shape, rng, init_scale, dtype):
    """Low-rank embedding (it can look rows up) and a Kronecker decoder (13 = 1 x 13 rows)."""
    if role == "embed":
        return LowRank.init(shape, 3, rng, init_scale, dtype)
    return Kronecker.init(shape, ((1, 4), (13, 2)), 2, rng, init_scale, dtype)


def kron_embedding(role, shape, rng, init_scale, dtype):
    """KroneckerBERT's embedding: A (V, H / 4) kron B (1, 4), B one row shared by every word."""
    V, H = shape
    return Kronecker.init(shape, ((V, H // 4), (1, 4)), 1, rng, init_scale, dtype)


def make(dropout=0.2, seed=0, tie=False, gates=None, vocab=None, init_scale=0.5):
    kw = {"gate_factory": gates} if gates is not None else {}
    if vocab is not None:
        kw["vocab_factory"] = vocab
    model = TransformerLM(V, H, L, NH, BS, dropout=dropout, init_scale=init_scale, seed=seed, dtype=np.float64,
                          tie=tie, **kw)
    return perturbed(model, seed)


def objective(model, x, y, state=None, distill=None, scale=float(T)):
    """(loss(), gradients): the trainer's objective (summed over time), every call with the same
    dropout masks and the same co-matrix dropout draws."""
    def run():
        for M in model.matrices.values():
            M.begin_batch(np.random.default_rng(7))          # as the trainer, before each forward
        return model.forward(x, state, y, rng=np.random.default_rng(99), distill=distill)

    return (lambda: scale * run().loss), model.backward(run().cache, scale=scale)


# --- the layers ---------------------------------------------------------------------------------
def test_layernorm_gradients(rng):
    ln = LayerNorm(H, np.float64)
    ln.g, ln.b = rng.uniform(0.5, 1.5, H), rng.standard_normal(H)
    x, R = rng.standard_normal((T, B, H)) * 3 + 1, rng.standard_normal((T, B, H))
    y, cache = ln.forward(x)
    np.testing.assert_allclose(((y - ln.b) / ln.g).mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(((y - ln.b) / ln.g).var(axis=-1), 1, atol=1e-4)   # var / (var + eps)
    dx, grads = ln.backward(R, cache)
    loss = lambda: float(np.sum(R * ln.forward(x)[0]))  # noqa: E731
    assert entrywise(loss, x, dx) < 1e-6
    assert entrywise(loss, ln.g, grads["g"]) < 1e-6
    assert entrywise(loss, ln.b, grads["b"]) < 1e-6


def test_gelu_is_gpt2s_tanh_approximation_and_its_gradient(rng):
    x = rng.standard_normal((4, 7)) * 3
    y, cache = gelu(x)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.ravel()]).reshape(x.shape)
    assert 0 < np.abs(y - exact).max() < 2e-3                # an approximation, a close one
    assert gelu(np.array([0.0]))[0][0] == 0.0 and abs(gelu(np.array([1.0]))[0][0] - 0.8411919906) < 1e-9
    R = rng.standard_normal(x.shape)
    assert entrywise(lambda: float(np.sum(R * gelu(x)[0])), x, gelu_backward(R, cache)) < 1e-6


@pytest.mark.parametrize("P, p", [(0, 0.0), (3, 0.0), (3, 0.4)])
def test_attention_gradients_with_the_causal_mask(P, p, rng):
    """q (B, nh, T, d) over P positions of context and its own T: the gradient of every key and
    value, the context's included, with dropout on the attention weights."""
    q, k, v = (rng.standard_normal((B, NH, n, 4)) for n in (T, P + T, P + T))
    R = rng.standard_normal((B, NH, T, 4))

    def loss():
        return float(np.sum(R * attend(q, k, v, p, np.random.default_rng(5))[0]))

    y, cache = attend(q, k, v, p, np.random.default_rng(5))
    att = cache[3]
    assert np.all(att[:, :, causal_mask(T, P + T)] == 0)
    np.testing.assert_allclose(att.sum(axis=-1), 1, atol=1e-12)
    dq, dk, dv = attend_backward(R, cache)
    for a, g in ((q, dq), (k, dk), (v, dv)):
        assert entrywise(loss, a, g) < 1e-6


def test_causal_mask_lets_each_query_see_its_past_only():
    np.testing.assert_array_equal(causal_mask(3, 3), [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(causal_mask(2, 4), [[0, 0, 0, 1], [0, 0, 0, 0]])


def dense_linear(rng, m, n):
    return Linear(Dense(rng.uniform(-0.5, 0.5, (m, n))), rng.uniform(-0.5, 0.5, m))


@pytest.mark.parametrize("P", [0, 2])
def test_one_block_gradients(P, rng):
    """A block with dropout everywhere, after P positions of context (a constant): every entry of
    its input and parameters."""
    attn = CausalSelfAttention(dense_linear(rng, 3 * H, H), dense_linear(rng, H, H), NH, dropout=0.3)
    block = Block(attn, dense_linear(rng, 4 * H, H), dense_linear(rng, H, 4 * H), dropout=0.3)
    for ln in (block.ln1, block.ln2):
        ln.g, ln.b = rng.uniform(0.5, 1.5, H), rng.uniform(-0.5, 0.5, H)
    x, R = rng.standard_normal((T, B, H)), rng.standard_normal((T, B, H))
    past = None if P == 0 else tuple(rng.standard_normal((B, NH, P, H // NH)) for _ in range(2))

    def loss():
        return float(np.sum(R * block.forward(x, past, np.random.default_rng(3))[0]))

    out, kv, cache = block.forward(x, past, np.random.default_rng(3))
    assert kv[0].shape == (B, NH, P + T, H // NH)
    dx, grads = block.backward(R, cache)
    params = block.params
    assert set(grads) == set(params) and "attn.qkv.W" in params and "mlp.proj.b" in params
    assert entrywise(loss, x, dx) < 1e-6
    for name, p in params.items():
        assert entrywise(loss, p, grads[name]) < 1e-6, name


# --- the whole model ----------------------------------------------------------------------------
@pytest.mark.parametrize("tie", [False, True])
def test_every_parameter_entry_of_the_dense_model(tie):
    model = make(dropout=0.25, tie=tie)
    rng = np.random.default_rng(1)
    loss, grads = objective(model, ids(rng, (T, B)), ids(rng, (T, B)))
    params = model.params
    assert set(grads) == set(params) and ("dec.W" in params) != tie
    for name, p in params.items():
        assert entrywise(loss, p, grads[name]) < 1e-6, name


def structured(**kw):
    return gate_factory(get_config("tiny").with_(**kw))


# the gate matrices as the trainer's configs build them, and the vocabulary matrices by hand
CASES = {
    "dense": {},
    "kp": {"gates": structured(structure="kp", compression=2.5)},
    "lowrank": {"gates": structured(structure="lmf", compression=2.5)},
    "hybrid": {"gates": structured(structure="hmd", compression=2.0)},
    "pruned": {"gates": structured(structure="prune", compression=2.0)},
    "doped-kp-cmr-output": {"gates": structured(structure="kp", compression=2.5, doping=0.05, cmr_p=0.3)},
    "doped-lowrank-cmr-connect": {"gates": structured(structure="lmf", compression=2.5, doping=0.05, cmr_p=0.3,
                                                      cmr_variant="connect")},
    "doped-hybrid": {"gates": structured(structure="hmd", compression=2.0, doping=0.05)},
    "groupreduce-vocab": {"vocab": grouped_vocab},
    "kron-decoder": {"vocab": kron_decoder},
    "kron-embedding": {"vocab": kron_embedding},
}
TIEABLE = list(CASES)


def compressed(case, tie, seed=0):
    """A model of CASES[case], its pruned masks and doped overlays made sparse and non-zero."""
    model = make(dropout=0.2, seed=seed, tie=tie, **CASES[case])
    rng = np.random.default_rng(seed + 3)
    for M in model.matrices.values():
        if isinstance(M, Pruned):
            M.set_sparsity(0.5)
        if isinstance(M, Doped):
            M.params["S"][:] = rng.standard_normal(M.nnz) * 0.5
            M.set_density(0.08)                              # below dense_above: the CSR kernels
    model.set_training(True)
    return model


@pytest.mark.parametrize("case, tie", [(c, False) for c in CASES] + [(c, True) for c in TIEABLE])
def test_whole_model_along_random_directions(case, tie):
    model = compressed(case, tie)
    kinds = {type(M).__name__ for M in model.matrices.values()}
    assert kinds != {"Dense"} or case == "dense"
    rng = np.random.default_rng(2)
    loss, grads = objective(model, ids(rng, (T, B)), ids(rng, (T, B)))
    assert set(grads) == set(model.params)
    assert directional(loss, model.params, grads, np.random.default_rng(5), n_dirs=3, eps=EPS) < 1e-6


def test_directional_check_catches_a_wrong_gradient():
    model = make()
    rng = np.random.default_rng(2)
    loss, grads = objective(model, ids(rng, (T, B)), ids(rng, (T, B)))
    grads["blocks.1.ln2.b"] = grads["blocks.1.ln2.b"] * 1.05
    assert directional(loss, model.params, grads, np.random.default_rng(5), n_dirs=2, eps=EPS) > 1e-4


def test_gradients_after_a_context_from_the_cache():
    """A window scored after a prompt (its key/value cache a constant, as truncated BPTT's state):
    the logits are the full sequence's, and the gradients hold."""
    model = make(dropout=0.0, tie=True)
    rng = np.random.default_rng(4)
    seq, y = ids(rng, (7, B)), ids(rng, (4, B))
    state = model.forward(seq[:3], None).state
    out = model.forward(seq[3:], state, y)
    assert out.state is None
    np.testing.assert_allclose(out.logits, model.forward(seq, None).logits[3:], rtol=0, atol=1e-12)
    loss, grads = objective(model, seq[3:], y, state=state)
    assert directional(loss, model.params, grads, np.random.default_rng(5), n_dirs=3, eps=EPS) < 1e-6


def test_distillation_gradients_and_distilling_towards_itself():
    teacher = make(dropout=0.0, seed=10, tie=True)
    model = make(dropout=0.2, vocab=grouped_vocab)
    rng = np.random.default_rng(1)
    x, y = ids(rng, (T, B)), ids(rng, (T, B))
    target, state = teacher.teacher_outputs(x, teacher.zero_state(B), y, 0.7, 1.3)
    assert state is None and len(target.hidden) == L and target.hidden[0].shape == (T, B, H)
    loss, grads = objective(model, x, y, distill=target)
    parts = model.forward(x, None, y, distill=target).cache["parts"]
    assert parts["kl"] > 0 and parts["hidden"] > 0
    assert directional(loss, model.params, grads, np.random.default_rng(6), n_dirs=3, eps=EPS) < 1e-6
    own, _ = teacher.teacher_outputs(x, None, y, 1.0, 1.0, 1.0, 1.0)
    parts = teacher.forward(x, None, y, distill=own).cache["parts"]
    assert abs(parts["kl"]) < 1e-12 and parts["hidden"] == parts["embed"] == parts["attn"] == 0.0


@pytest.mark.parametrize("P", [0, 3])
def test_layer_by_layer_distillation_of_the_embedding_and_the_attention_scores(P):
    """KroneckerBERT's intermediate-layer terms: the embedding output's and each block's attention
    scores' mean squared difference (visible entries only) from the teacher's, in float64 along
    random directions, with dropout and a key/value context; a masked score never counts."""
    teacher = make(dropout=0.0, seed=10, tie=True)
    model = make(dropout=0.2, gates=structured(structure="kp", compression=2.5), vocab=kron_embedding, tie=True)
    rng = np.random.default_rng(2)
    x, y = ids(rng, (T, B)), ids(rng, (T, B))
    past = None if P == 0 else teacher.forward(ids(rng, (P, B)), None).state
    mine = None if P == 0 else model.forward(ids(rng, (P, B)), None).state
    target, _ = teacher.teacher_outputs(x, past, y, 0.5, 0.0, 1.5, 2.0)
    assert target.embed.shape == (T, B, H) and len(target.scores) == L and target.scores[0].shape == (B, NH, T, P + T)
    loss, grads = objective(model, x, y, state=mine, distill=target)
    parts = model.forward(x, mine, y, distill=target).cache["parts"]
    assert parts["embed"] > 0 and parts["attn"] > 0 and "hidden" in parts
    assert directional(loss, model.params, grads, np.random.default_rng(6), n_dirs=3, eps=EPS) < 1e-6
    masked = [t.copy() for t in target.scores]
    for t in masked:
        t[..., causal_mask(T, P + T)] = 1e6                   # what the mask hides is no target
    again = model.forward(x, mine, y, distill=target._replace(scores=masked)).cache["parts"]
    assert again["attn"] == pytest.approx(parts["attn"], rel=1e-12)


# --- causality and generation -------------------------------------------------------------------
def test_changing_a_token_changes_nothing_before_it():
    model = make(dropout=0.0)
    rng = np.random.default_rng(0)
    x = ids(rng, (BS, 2))
    logits = model.forward(x, None).logits
    for t in range(BS - 1):
        x2 = x.copy()
        x2[t + 1] = (x2[t + 1] + 1) % V
        logits2 = model.forward(x2, None).logits
        np.testing.assert_allclose(logits2[:t + 1], logits[:t + 1], rtol=0, atol=1e-13)
        assert np.abs(logits2[t + 1] - logits[t + 1]).min() > 0   # the changed position does change


@pytest.mark.parametrize("case, tie, batch", [("dense", False, 3), ("dense", True, 1),
                                              ("doped-kp-cmr-output", True, 1), ("kron-decoder", False, 2)])
def test_generation_with_the_cache_equals_the_full_forward(case, tie, batch):
    model = compressed(case, tie)
    model.set_training(False)
    x = ids(np.random.default_rng(1), (BS, batch))
    full = model.forward(x, model.zero_state(batch)).logits
    out = model.forward(x[:3], model.zero_state(batch))      # a prompt, then a token at a time
    steps = [out.logits]
    for t in range(3, BS):
        out = model.forward(x[t:t + 1], out.state)
        steps.append(out.logits)
    assert out.state[0][0].shape == (batch, NH, BS, H // NH)
    np.testing.assert_allclose(np.concatenate(steps), full, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"x's 1 positions after the 8 of state's key/value cache make 9, more "
                                         r"than block_size = 8"):
        model.forward(x[:1], out.state)


def test_the_lstm_sampler_serves_the_transformer():
    from dkp.core.sample import sample
    model = make(dropout=0.3, seed=2, init_scale=0.8)
    prompt = [4, 1, 7]
    greedy = sample(model, prompt, BS - len(prompt), temperature=0.0)
    seq = list(prompt)                                       # the same, from full forwards without a cache
    for _ in range(BS - len(prompt)):
        seq.append(int(np.argmax(model.forward(np.array(seq)[:, None], None).logits[-1, 0])))
    np.testing.assert_array_equal(greedy, seq[len(prompt):])
    assert len(set(greedy.tolist())) > 1
    with pytest.raises(ValueError, match="block_size = 8"):
        sample(model, prompt, BS - len(prompt) + 1)


def test_evaluation_scores_each_window_on_its_own():
    """`dkp.training.evaluate.evaluate` carries the state across windows; the transformer passes
    None, so each window is scored alone: 8 windows here, twice block_size positions in all."""
    from dkp.core.data import batchify, bptt_windows
    from dkp.training.evaluate import evaluate
    model = make(dropout=0.3)
    stream_ids = np.random.default_rng(0).integers(0, V, 66)
    total, count = 0.0, 0
    for x, y in bptt_windows(batchify(stream_ids, 2), 4):
        total += model.forward(x, None, y).loss * x.size
        count += x.size
    assert count == 64
    assert abs(evaluate(model, stream_ids, 2, 4) - math.exp(total / count)) < 1e-12
    with pytest.raises(ValueError, match="x has 9 positions, more than block_size = 8"):
        evaluate(model, stream_ids, 2, 9)


# --- the contract: optimizers, checkpoints, factories, dtypes ----------------------------------
def test_adam_learns_a_sequence():
    from dkp.core.optim import Adam, clip_global_norm
    model = TransformerLM(V, 16, 2, 2, BS, dropout=0.1, seed=1, dtype=np.float32, tie=True)
    seq = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5])
    x, y = np.stack([seq[:-1]] * 2, axis=1), np.stack([seq[1:]] * 2, axis=1)
    opt, rng, losses = Adam(3e-3), np.random.default_rng(0), []
    for _ in range(150):
        out = model.forward(x, None, y, rng=rng)
        grads = model.backward(out.cache)
        clip_global_norm(grads, 1.0)
        opt.step(model.params, grads)
        losses.append(out.loss)
    assert losses[0] > 2.3 and model.forward(x, None, y).loss < 0.3   # from ~log 13 to nearly memorised


def test_checkpoint_arrays_load_into_a_fresh_model():
    """dkp.training.checkpoint's loader puts one model's parameters and buffers (pruning masks, the
    grouped vocabulary's word order) into another of the same kind: the same logits."""
    from dkp.training.checkpoint import load_model_arrays
    kinds = {"gates": CASES["pruned"]["gates"], "vocab": grouped_vocab, "tie": True}
    a, b = make(seed=0, **kinds), make(seed=1, **kinds)
    for M in a.matrices.values():
        if isinstance(M, Pruned):
            M.set_sparsity(0.5)
    arrays = {f"param.{k}": v.copy() for k, v in a.params.items()}
    for prefix, M in a.matrices.items():
        arrays.update({f"buffer.{prefix}.{k}": v for k, v in M.buffers.items()})
    assert "buffer.embed.order" in arrays and "buffer.blocks.1.mlp.fc.mask" in arrays
    x = ids(np.random.default_rng(0), (T, B))
    assert np.abs(a.forward(x, None).logits - b.forward(x, None).logits).max() > 1e-3
    load_model_arrays(b, arrays)
    np.testing.assert_array_equal(b.forward(x, None).logits, a.forward(x, None).logits)
    assert all(np.array_equal(b.matrices[k].mask, M.mask) for k, M in a.matrices.items() if isinstance(M, Pruned))


def test_factories_see_each_matrix_by_its_name():
    calls = []

    def gates(layer, shape, rng, init_scale, dtype):
        calls.append((layer, shape))
        return Dense.init(shape, rng, init_scale, dtype)

    def vocab(role, shape, rng, init_scale, dtype):
        calls.append((role, shape))
        return Dense.init(shape, rng, init_scale, dtype)

    model = TransformerLM(V, H, 1, NH, BS, gate_factory=gates, vocab_factory=vocab)
    assert calls == [("embed", (V, H)), ("blocks.0.attn.qkv", (3 * H, H)), ("blocks.0.attn.proj", (H, H)),
                     ("blocks.0.mlp.fc", (4 * H, H)), ("blocks.0.mlp.proj", (H, 4 * H)), ("dec", (V, H))]
    assert list(model.matrices) == [c[0] for c in calls]
    calls.clear()
    tied = TransformerLM(V, H, 1, NH, BS, tie=True, gate_factory=gates, vocab_factory=vocab)
    assert "dec" not in [c[0] for c in calls] and "dec" not in tied.matrices and tied.decoder is tied.embedding


def test_float32_by_default_and_float64_by_astype():
    model = TransformerLM(V, H, L, NH, BS, dropout=0.1)
    assert model.dtype == np.float32 and all(p.dtype == np.float32 for p in model.params.values())
    x = ids(np.random.default_rng(0), (T, B))
    out = model.forward(x, model.zero_state(B))
    assert out.logits.dtype == np.float32 and out.state[0][0].dtype == np.float32
    cache = model.forward(x, None, x, rng=np.random.default_rng(0)).cache
    assert all(g.dtype == np.float32 for g in model.backward(cache).values())
    model.astype(np.float64)
    assert all(p.dtype == np.float64 for p in model.params.values())
    assert model.forward(x, None).logits.dtype == np.float64


def test_dropout_only_with_an_rng():
    model = make(dropout=0.3)
    x = ids(np.random.default_rng(0), (T, B))
    plain = model.forward(x, None, x).loss
    assert model.forward(x, None, x).loss == plain
    assert model.forward(x, None, x, rng=np.random.default_rng(0)).loss != plain
    assert make(dropout=0.0).forward(x, None, x, rng=np.random.default_rng(0)).loss == \
        make(dropout=0.0).forward(x, None, x).loss


# --- errors name their argument ---------------------------------------------------------------
def wrong_shape(name, shape, rng, init_scale, dtype):
    return Dense.init((shape[0], shape[1] + 1), rng, init_scale, dtype)


@pytest.mark.parametrize("kw, match", [
    ({"num_heads": 3}, "num_heads must divide hidden_size = 8"),
    ({"num_heads": 0}, "num_heads must be a positive integer"),
    ({"block_size": 0}, "block_size must be a positive integer"),
    ({"vocab_size": 2.5}, "vocab_size must be a positive integer"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"gate_factory": wrong_shape}, r"gate_factory must give 'blocks.0.attn.qkv' the shape \(24, 8\)"),
    ({"vocab_factory": wrong_shape}, r"vocab_factory must give 'embed' the shape \(13, 8\)"),
])
def test_bad_construction_is_named(kw, match):
    args = {"vocab_size": V, "hidden_size": H, "num_layers": L, "num_heads": NH, "block_size": BS, **kw}
    with pytest.raises(ValueError, match=match):
        TransformerLM(**args)


def test_bad_calls_are_named():
    model = make(dropout=0.0)
    x = ids(np.random.default_rng(0), (T, B))
    state = model.forward(x, None).state
    bad = [((x[:, 0], None), "x must be a \\(T, B\\) array of integer token ids"),
           ((x * 0.5, None), "x must be a \\(T, B\\) array of integer token ids"),
           ((x + V, None), r"x ids must lie in \[0, 13\)"),
           ((x, None, x[:2]), "targets must have x's shape"),
           ((ids(np.random.default_rng(0), (BS + 1, B)), None), "x has 9 positions, more than block_size = 8"),
           ((x, [1, 2]), "state must be None .* num_layers = 2 pairs"),
           ((x[:, :2], state), r"state's keys and values must each have shape .* \(2, 2, 5, 4\)"),
           ((x, state), "x's 5 positions after the 5 of state's key/value cache make 10")]
    for args, match in bad:
        with pytest.raises(ValueError, match=match):
            model.forward(*args)
    target, _ = model.teacher_outputs(x, None, x, 1.0, 0.0)
    with pytest.raises(ValueError, match="distill needs targets"):
        model.forward(x, None, distill=target)
    with pytest.raises(ValueError, match="forward with targets"):
        model.backward(model.forward(x, None).cache)
    cache = model.forward(x, None, x).cache
    model.backward(cache)
    with pytest.raises(RuntimeError, match="already used by backward"):
        model.backward(cache)
    with pytest.raises(ValueError, match="name must be one of"):
        model.set_matrix("blocks.9.attn.qkv", Dense(np.zeros((3 * H, H))))
    with pytest.raises(ValueError, match=r"must have shape \(24, 8\)"):
        model.set_matrix("blocks.0.attn.qkv", Dense(np.zeros((H, H))))
    with pytest.raises(ValueError, match="set `embedding` instead"):
        make(tie=True).decoder = Dense(np.zeros((V, H)))
    with pytest.raises(TypeError, match="cannot serve as an embedding"):
        make(vocab=lambda role, shape, rng, scale, dtype: Hybrid.init(shape, 2, 1, rng, scale, dtype)).forward(x, None)
