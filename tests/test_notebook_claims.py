"""The numerical claims the notebooks assert, as unit tests, so that no claim rests on a notebook alone.

Claims already covered elsewhere (the notebooks cite these tests next to their asserts):
  PTB token counts and vocabulary (00, 01)      tests/test_data.py::test_ptb_word_counts
  character-level PTB (00, with FULL = True)    tests/test_data.py::test_ptb_char_level
  unigram perplexity is the bar (01)            tests/test_data.py::test_unigram_perplexity_is_the_bar
  y is x shifted by one, windows tile (01)      tests/test_data.py::test_bptt_windows_cover_the_stream_with_shifted_targets
  every parameter entry, small model (01)       tests/test_model.py::test_every_parameter_entry
  first epoch far below the unigram model (01)  tests/test_train.py::test_short_training_beats_the_unigram_model
  sampling: seeded, in vocabulary, argmax (01)  tests/test_sample.py
  fast Kronecker product == x @ np.kron(A, B).T, Numba and BLAS kernels, rank r (02)
                                                tests/test_kernels.py::test_kron_forward
  the cheaper multiplication order (02)         tests/test_kernels.py::test_kron_costs_pick_the_cheaper_order
  kron_shape's splits of 2600 x 1300 at 25x, rank rule and prefer="flops" (02)
                                                tests/test_shapes.py::test_paper_shapes_at_25x,
                                                ::test_paper_split_chosen_for_speed
  every kron_shape split meets its target (02)  tests/test_shapes.py::test_every_proposal_meets_its_target
  R(A kron B) = vec A vec B^T (02)              tests/test_compress.py::
                                                  test_rearrangement_turns_kron_into_an_outer_product
  an exact Kronecker product is recovered (02)  tests/test_compress.py::
                                                  test_nearest_kronecker_recovers_an_exact_product
  nearest-KP error = SVD tail, decreasing with rank, exact at full rank (02)
                                                tests/test_compress.py::
                                                  test_nearest_kronecker_error_is_the_svd_tail_and_decreases_with_rank,
                                                  test_nearest_kronecker_errors_are_the_relative_svd_tail
  the Kronecker explorer's numbers == dkp.compression.shapes', invalid splits explained (02)
                                                tests/test_widgets.py
  inference (08): bytes, multiply-adds and FLOP bounds of 2600 x 1300, 0.5 FLOP/B for dense, fit in
  L2 / L3, fused step == layer, committed rows == the matrices, target verdict == the benchmark's
                                                tests/test_speedplots.py (its docstring maps each claim)
The tests below cover the rest, with the notebook's own sizes.
"""
import numpy as np
import pytest

from dkp.compression.compress import nearest_kronecker_errors
from dkp.compression.shapes import KronShape, kron_candidates, kron_shape
from dkp.core.data import batchify, bptt_windows
from dkp.core.gradcheck import directional
from dkp.core.model import LanguageModel
from dkp.course.notebook import demo_training
from dkp.kernels import arith
from dkp.training.configs import get_config
from dkp.training.loop import build_model


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
    for layer in model.layers:
        layer.fast = False                                    # 01 shows the reference path's cache
    _, loss, _, cache = model.forward(x, model.zero_state(20), y)
    assert abs(loss - np.log(len(ptb.vocab))) < 0.05
    assert len(cache["steps"][0]) == 20 and cache["probs"].shape == (20 * 20, len(ptb.vocab))


def ptb_sized_problem(ptb):
    """01's whole-model check: the real vocabulary, 2 x 32 LSTM, dropout on, a PTB window (5, 4)."""
    x, y = ptb_window(ptb)
    x, y = x[:5, :4], y[:5, :4]
    model = LanguageModel(len(ptb.vocab), 32, 2, dropout=0.25, init_scale=0.1, seed=0, dtype=np.float64)

    def loss():
        return 5 * model.forward(x, model.zero_state(4), y, rng=np.random.default_rng(99)).loss

    _, _, _, cache = model.forward(x, model.zero_state(4), y, rng=np.random.default_rng(99))
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
    _, loss, final, _ = model.forward(x, model.zero_state(4), y)
    state, losses = model.zero_state(4), []
    for t in range(len(x)):
        _, step_loss, state, _ = model.forward(x[t:t + 1], state, y[t:t + 1])
        losses.append(step_loss)
    assert abs(np.mean(losses) - loss) < 1e-12
    assert max(float(np.abs(a - b).max()) for s, f in zip(state, final) for a, b in zip(s, f)) < 1e-12


# --- 02 · Kronecker products ---------------------------------------------------------------------

PAPER = (2600, 1300)   # Zaremba medium: 4H x 2H, H = 650


@pytest.mark.parametrize("sides", [((2, 3), (2, 2)), ((3, 4), (4, 3)), ((1, 5), (3, 1))])
def test_kron_blocks_are_scaled_copies_of_B(sides, rng):
    (m1, n1), (m2, n2) = sides
    A, B = rng.integers(-3, 4, (m1, n1)), rng.integers(-3, 4, (m2, n2))
    W = np.kron(A, B)
    assert W.shape == (m1 * m2, n1 * n2)
    for i in range(m1):
        for j in range(n1):
            assert (W[i * m2:(i + 1) * m2, j * n2:(j + 1) * n2] == A[i, j] * B).all()
            for k in range(m2):
                for l in range(n2):
                    assert W[i * m2 + k, j * n2 + l] == A[i, j] * B[k, l]


def test_rank_of_a_kronecker_product():
    """02: rank(A kron B) = rank A * rank B (the notebook's seeded 3 x 4 and 4 x 3 give 9), so
    KronShape.max_rank = min(m, n, min(m1, n1) * min(m2, n2)) is reached by generic factors."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((3, 4)), rng.standard_normal((4, 3))
    rank = np.linalg.matrix_rank
    assert rank(np.kron(A, B)) == rank(A) * rank(B) == 9
    low = rng.standard_normal((5, 1)) @ rng.standard_normal((1, 4))          # rank 1
    assert rank(np.kron(low, B)) == 3
    for k in [KronShape(3, 4, 4, 3), KronShape(2, 6, 5, 2), KronShape(6, 2, 2, 6)]:
        A, B = rng.standard_normal((k.m1, k.n1)), rng.standard_normal((k.m2, k.n2))
        assert rank(np.kron(A, B)) == k.max_rank


@pytest.mark.parametrize("sides", [((2, 3), (2, 2)), ((520, 260), (5, 5)), ((5, 5), (520, 260)),
                                   ((200, 650), (13, 2)), ((3, 1), (1, 4))])
def test_row_major_identity_and_both_orders(sides):
    """02: y = (A @ X @ B.T).reshape(b, m) with X = x.reshape(b, n1, n2) equals x @ np.kron(A, B).T
    (exactly, on integers); both orders agree; kron_costs counts the matmul shapes' multiply-adds."""
    (m1, n1), (m2, n2) = sides
    rng = np.random.default_rng(1)
    A, B = rng.integers(-3, 4, (m1, n1)), rng.integers(-3, 4, (m2, n2))
    b = 3
    x = rng.integers(-5, 6, (b, n1 * n2))
    X = x.reshape(b, n1, n2)
    y = (A @ X @ B.T).reshape(b, m1 * m2)
    assert (y == x @ np.kron(A, B).T).all()
    assert ((A @ X) @ B.T == A @ (X @ B.T)).all()
    b_first = n1 * n2 * m2 + m1 * n1 * m2            # X @ B.T, then A @ .
    a_first = m1 * n1 * n2 + m1 * n2 * m2            # A @ X, then . @ B.T
    assert arith.kron_costs(m1, n1, m2, n2) == (b_first, a_first)


@pytest.mark.parametrize("shape", [PAPER, (256, 128), (800, 400), (6000, 3000), (12, 6)])
def test_speed_bound_never_exceeds_compression(shape):
    """02: every stored number is used at least once per input row, so multiply-adds >= parameters."""
    m, n = shape
    for c in kron_candidates(shape):
        assert min(arith.kron_costs(c.m1, c.n1, c.m2, c.n2)) >= c.m1 * c.n1 + c.m2 * c.n2
        assert m * n / c.flops <= c.compression * (1 + 1e-12)


def test_paper_splits_at_25x_trade_rank_for_speed():
    """02's table: of the splits within 5% above 25x (one of each mirror pair), the rank rule's is the
    only full-rank one and the slowest; the fastest reaches rank < 5% of 1300."""
    m, n = PAPER
    near = sorted((c for c in kron_candidates(PAPER) if 25 * (1 - 1e-3) <= c.compression <= 25 * 1.05
                   and c.m1 * c.n1 >= c.m2 * c.n2), key=lambda c: c.flops)
    assert len(near) == 7
    assert near[-1] == kron_shape(PAPER, 25) and [c.max_rank == 1300 for c in near].count(True) == 1
    assert near[0].max_rank < 0.05 * 1300
    assert kron_shape(PAPER, 25, prefer="flops") in near


# The short run of notebook 02 (FULL = False), section 4.
DEMO_02 = get_config("tiny").with_(train_tokens=100_000, eval_tokens=10_000, epochs=2)


def test_nearest_kp_of_the_trained_gate_matrix(ptb):
    """02, section 4, with the notebook's run: training moves layer 0's gate matrix far from its
    random start; for the course-rule split and the gate-aligned split, the trained matrix's
    nearest-KP error is below a random matrix's at every rank short of full (both exact there); the
    course rule's rank-1 error stays above 0.9; at about 8x one gate-aligned product beats four
    course-rule products."""
    trainer, _, _ = demo_training(DEMO_02, seed=0, corpus=ptb)   # the notebook then loads this run
    W = trainer.model.layers[0].W.to_dense()
    W0 = build_model(DEMO_02, len(ptb.vocab), 0).layers[0].W.to_dense()
    assert np.linalg.norm(W - W0) / np.linalg.norm(W0) > 1
    R = np.random.default_rng(0).standard_normal(W.shape)
    H = DEMO_02.hidden
    course, gate = kron_shape(W.shape, 25), KronShape(4, 2, H, H)
    errors = {}
    for name, k in (("course", course), ("gate", gate)):
        ranks = np.arange(1, min(k.m1 * k.n1, k.m2 * k.n2) + 1)
        trained, random = nearest_kronecker_errors(W, k, ranks), nearest_kronecker_errors(R, k, ranks)
        for e in (trained, random):
            assert np.all(np.diff(e) < 1e-12) and e[-1] < 1e-10
        assert np.all(trained[:-1] < random[:-1])
        errors[name] = trained
    assert errors["course"][0] > 0.9
    four = KronShape(course.m1, course.n1, course.m2, course.n2, rank=4)
    assert errors["gate"][0] < errors["course"][3] and gate.compression >= four.compression
