"""The exercises of notebooks 00-02 (the course map, the LSTM language model, Kronecker products):
each reference computed with dkp's own functions (the corpus, the model builder, the layer's
backward pass, the evaluation loop, KronShape, the kernels, the nearest Kronecker products), with
the hints for the common wrong answers."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from dkp.compression.compress import nearest_kronecker_errors
from dkp.compression.shapes import KronShape, kron_shape
from dkp.core.data import batchify, bptt_windows, load_corpus
from dkp.course.exercise_protocol import (ANY, Exercise, Near, Reference, function, integer, number, pair,
                                          part_hints)
from dkp.kernels import arith, kron
from dkp.training.configs import get_config
from dkp.training.evaluate import evaluate
from dkp.training.loop import build_model


@lru_cache(maxsize=1)
def ptb():
    return load_corpus("ptb")


# --- 00 · course map ---------------------------------------------------------------------------------

def unk_share():
    corpus = ptb()
    unk = corpus.vocab.encode(["<unk>"])[0]
    count = int(np.count_nonzero(corpus.valid == unk))
    share = count / len(corpus.valid)
    return Reference(share, mistakes=[
        (count, "that is the number of <unk> tokens; divide it by the number of tokens of the split"),
        (100 * share, "that is a percentage; give the share as a fraction between 0 and 1"),
        (float(np.mean(corpus.train == unk)), "that is the share in the training split; the exercise asks for "
                                              "the validation split"),
        (float(np.mean(corpus.test == unk)), "that is the share in the test split; the exercise asks for the "
                                             "validation split")],
        otherwise="that is not the share of <unk> among the validation tokens (count them in corpus.valid)")


PAPER_SPLIT = KronShape(520, 260, 5, 5)


def paper_kp_size():
    k = PAPER_SPLIT
    m, n = k.shape
    return Reference((k.n_params, k.compression), mistakes=[
        ((m * n, ANY), "m * n is what the dense matrix stores; A and B store their own entries only"),
        ((k.n_params, 1 / k.compression), "the compression is dense / stored, not stored / dense"),
        ((k.n_params, Near(k.compression, 5e-3)), "close: give the exact ratio, not a rounded one")],
        otherwise=part_hints({0: "the stored count is not the number of entries of A and B together",
                              1: "the compression is m n / (m1 n1 + m2 n2)"}))


def paper_doped_size():
    k = PAPER_SPLIT
    m, n = k.shape
    nnz = round(0.01 * m * n)
    compression = m * n / (k.n_params + nnz)
    return Reference((nnz, compression), mistakes=[
        ((nnz, k.compression), "that is the compression of A ⊗ B alone; S's non-zeros are stored too"),
        ((nnz, Near(compression, 5e-3)), "close: give the exact ratio, not a rounded one"),
        ((round(0.01 * k.n_params), ANY), "S has the shape of W: 1% of W's m n entries, not of A's and B's")],
        otherwise=part_hints({0: f"the non-zeros are 1% of the {m * n:,} entries of W, rounded",
                              1: "the compression is dense / (the values of A, B and S)"}))


# --- 01 · the LSTM language model --------------------------------------------------------------------

def medium_params():
    cfg = get_config("medium")
    H, L, V = cfg.hidden, cfg.layers, len(ptb().vocab)
    n = sum(p.size for p in build_model(cfg, V, seed=0).params.values())
    return Reference(n, rtol=0, mistakes=[
        (n - L * 4 * H, "almost: each layer also has a bias of 4H entries"),
        (n - V, "almost: the decoder also has a bias, one entry per word"),
        (n - V * H, "the embedding and the decoder are two separate (V, H) matrices"),
        (L * 4 * H * 2 * H, "that is the gate matrices alone; count the embedding, the decoder and the biases too")],
        otherwise="that is not the number of parameters of the medium model (embedding, L layers of W and b, "
                  "decoder and its bias)")


def forget_gate_gradient(layer, x, state):
    """d loss / d b[H + 1] of one step of `layer` on x (B, in) from `state`, the loss being the
    hidden state read out with np.linspace(-1, 1, H): dkp's hand-written backward pass."""
    H = layer.hidden_size
    B = x.shape[0]
    readout = np.linspace(-1.0, 1.0, H)
    _, _, steps = layer.forward(x[None], state)
    _, grads, _ = layer.backward(readout[None, None, :] * np.ones((1, B, H)), steps)
    k = H + 1
    mistakes = [(float(grads["b"][block * H + 1]),
                 f"that is the derivative for gate {gate}; the forget gate's rows are H1 .. 2 H1 - 1")
                for block, gate in enumerate("ifgo") if block != 1]
    mistakes.append((Near(float(grads["b"][k]), 1e-3),
                     "close: use the central difference with eps = 1e-6, it is accurate to about 1e-10"))
    return Reference(float(grads["b"][k]), mistakes=mistakes,
                     otherwise="that is not d loss / d b[H1 + 1]: perturb b[H1 + 1] by +eps and -eps in lstm_step")


def window_perplexity(model):
    ids, batch, bptt = ptb().valid[:2000], 10, 35
    ppl = evaluate(model, ids, batch, bptt)
    fresh, sizes, window_losses = [], [], []
    for xw, yw in bptt_windows(batchify(ids, batch), bptt):
        fresh.append(model.forward(xw, model.zero_state(batch), yw).loss * xw.size)
        sizes.append(xw.size)
    state = model.zero_state(batch)
    for xw, yw in bptt_windows(batchify(ids, batch), bptt):
        _, loss_w, state, _ = model.forward(xw, state, yw)
        window_losses.append(loss_w)
    return Reference(ppl, mistakes=[
        (float(np.log(ppl)), "that is the mean cross-entropy in nats; the perplexity is its exponential"),
        (float(np.exp(sum(fresh) / sum(sizes))), "the state must be carried from one window to the next, not reset"),
        (float(np.exp(np.mean(window_losses))), "the last window is shorter: weight each window's loss by its "
                                                "number of words")],
        otherwise="that is not the perplexity of the model on these tokens")


# --- 02 · Kronecker products -------------------------------------------------------------------------

SMALL_SPLIT = KronShape(100, 50, 8, 8)               # A 100x50 ⊗ B 8x8, W 800 x 400


def small_kp_size():
    k = SMALL_SPLIT
    m, n = k.shape
    return Reference((k.n_params, k.compression), mistakes=[
        ((m * n, ANY), "m n is what the dense matrix stores; A and B store their own entries only"),
        ((k.n_params, 1 / k.compression), "the compression is dense / stored, not stored / dense")],
        otherwise=part_hints({0: "the parameter count is the entries of A plus those of B",
                              1: "the compression is m n / (m1 n1 + m2 n2)"}))


def small_kp_costs():
    k = SMALL_SPLIT
    b_first, a_first = arith.kron_costs(k.m1, k.n1, k.m2, k.n2)
    return Reference((b_first, a_first), rtol=0, mistakes=[
        ((a_first, b_first), "the two numbers are swapped: B first is X B^T, then A (X B^T)"),
        ((b_first, ANY), "B first is right; A first is A X, then (A X) B^T"),
        ((ANY, a_first), "A first is right; B first is X B^T, then A (X B^T)")],
        otherwise="neither count is right: a (p, q) @ (q, r) product costs p q r multiply-adds")


KRON_CASES = [((3, 4), (5, 2), 1), ((6, 2), (3, 7), 4), ((2, 3), (2, 2), 3), ((1, 5), (4, 1), 2)]


def kron_apply_solution(A, B, x):
    """x (A kron B)^T without forming A kron B: x reshaped row-major to (b, n1, n2)."""
    b = x.shape[0]
    return (A @ x.reshape(b, A.shape[1], B.shape[1]) @ B.T).reshape(b, A.shape[0] * B.shape[0])


def _judge_kron_apply(kron_apply):
    rng = np.random.default_rng(12345)
    for (m1, n1), (m2, n2), b in KRON_CASES:
        A, B = rng.standard_normal((m1, n1)), rng.standard_normal((m2, n2))
        x = rng.standard_normal((b, n1 * n2))
        expected = kron.kron_matmul(A[None], B[None], x)
        real_kron = np.kron

        def no_kron(*args, **kwargs):
            raise RuntimeError("np.kron was called")
        np.kron = no_kron                               # the point is not to form A ⊗ B
        try:
            got = kron_apply(A, B, x)
        except Exception as error:
            if "np.kron was called" in str(error):
                return "kron_apply formed A ⊗ B with np.kron; reshape x instead"
            return f"kron_apply raised {type(error).__name__}: {error}"
        finally:
            np.kron = real_kron
        got = np.asarray(got)
        if got.shape != (b, m1 * m2):
            return f"for A {m1}x{n1}, B {m2}x{n2} and {b} rows the result must have shape {(b, m1 * m2)}, got {got.shape}"
        if not np.allclose(got, expected, rtol=1e-10, atol=1e-12):
            return f"wrong values for A {m1}x{n1}, B {m2}x{n2}, {b} rows (is x reshaped row-major to (b, n1, n2)?)"
    return None


def kron_apply_exercise():
    def with_kron(A, B, x):
        return x @ np.kron(A, B).T

    def column_major(A, B, x):
        b = x.shape[0]
        return (A @ x.reshape(b, B.shape[1], A.shape[1]).transpose(0, 2, 1) @ B.T).reshape(b, -1)
    return Reference(kron_apply_solution, judge=_judge_kron_apply, mistakes=[
        (with_kron, "formed A ⊗ B with np.kron"), (column_major, "is x reshaped row-major")])


def kp_energy(W):
    k = kron_shape(W.shape, 25)
    error_1, error_3 = nearest_kronecker_errors(W, k, [1, 3])
    share = 1 - error_3 ** 2
    return Reference(float(share), mistakes=[
        (float(error_3), "that is the relative error; the share captured is 1 - error²"),
        (float(1 - error_1 ** 2), "that is what one product captures; the exercise asks for the nearest sum of three"),
        (float(1 - error_3), "the shares add up in squared singular values: 1 - error², not 1 - error")],
        otherwise="that is not the share of ||W||_F² the nearest sum of three products captures (sum the "
                  "three largest squared singular values of R(W) over all of them)")


EXERCISES = [
    Exercise("00.1", number("a fraction between 0 and 1"), unk_share),
    Exercise("00.2", pair(integer(), number(), "(stored, compression)"), paper_kp_size),
    Exercise("00.3", pair(integer(), number(), "(nonzeros, compression)"), paper_doped_size),
    Exercise("01.1", integer("the number of parameters, a whole number"), medium_params),
    Exercise("01.2", number(), forget_gate_gradient, needs=("layer", "x", "state")),
    Exercise("01.3", number("the perplexity, a number"), window_perplexity, needs=("model",)),
    Exercise("02.1", pair(integer(), number(), "(n_params, compression)"), small_kp_size),
    Exercise("02.2", pair(integer(), integer(), "(b_first, a_first)"), small_kp_costs),
    Exercise("02.3", function("a function kron_apply(A, B, x)"), kron_apply_exercise),
    Exercise("02.4", number("the share captured, between 0 and 1"), kp_energy, needs=("W",)),
]
