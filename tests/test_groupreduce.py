"""GroupReduce: the grouped low-rank vocabulary matrix against its dense reference and finite
differences (float64), row lookups of every vocabulary matrix, and the compression algorithm
(grouping, ranks under the budget, weighted SVD, refinement) with its baselines."""
import numpy as np
import pytest

from dkp.compression import groupreduce as gr
from dkp.core.gradcheck import entrywise
from dkp.core.weights import Dense, GroupLowRank, Hybrid, Kronecker, LowRank, Pruned


def grouped(seed=0, V=23, n=6, sizes=(4, 11, 8), ranks=(3, 2, 1), dtype=np.float64):
    rng = np.random.default_rng(seed)
    return GroupLowRank.init((V, n), sizes, ranks, rng, scale=0.5, dtype=dtype, order=rng.permutation(V))


def test_grouped_products_equal_the_dense_matrix():
    W = grouped()
    D = W.to_dense()
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((5, 6)), rng.standard_normal((5, 23))
    y, cache = W.forward(x)
    np.testing.assert_allclose(y, x @ D.T, atol=1e-12)
    dx, grads = W.backward(dy, cache)
    np.testing.assert_allclose(dx, dy @ D, atol=1e-12)
    np.testing.assert_allclose(W.backward_input(dy, cache), dx, atol=1e-12)
    ids = np.array([[3, 3, 0], [22, 7, 3]])                     # a repeated word
    np.testing.assert_allclose(W.rows(ids), D[ids], atol=1e-12)
    assert W.n_params == sum(k * r + r * 6 for k, r in zip((4, 11, 8), (3, 2, 1)))
    assert W.n_bytes == 8 * W.n_params + 4 * 23


def test_grouped_gradients_against_finite_differences():
    W = grouped(2)
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((4, 6)), rng.standard_normal((4, 23))
    ids, de = rng.integers(0, 23, (3, 5)), rng.standard_normal((3, 5, 6))
    y, cache = W.forward(x)
    _, grads = W.backward(dy, cache)
    rgrads = W.rows_backward(ids, de)
    for name, p in W.params.items():
        assert entrywise(lambda: float(np.sum(W.forward(x)[0] * dy)), p, grads[name]) < 1e-8, name
        assert entrywise(lambda: float(np.sum(W.rows(ids) * de)), p, rgrads[name]) < 1e-8, name


@pytest.mark.parametrize("make", [
    lambda rng: Dense(rng.standard_normal((9, 4))),
    lambda rng: LowRank(rng.standard_normal((9, 2)), rng.standard_normal((2, 4))),
    lambda rng: Pruned(rng.standard_normal((9, 4)), rng.random((9, 4)) < 0.5),
    lambda rng: Kronecker(rng.standard_normal((1, 9, 2)), rng.standard_normal((1, 1, 2))),   # KroneckerBERT's: B one row
    lambda rng: Kronecker(rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 3, 2))),   # rank 2, B of 3 rows
])
def test_row_lookup_of_every_vocabulary_matrix(make):
    rng = np.random.default_rng(4)
    W = make(rng)
    ids, de = np.array([[1, 8, 1], [0, 1, 5]]), rng.standard_normal((2, 3, 4))
    np.testing.assert_allclose(W.rows(ids), W.to_dense()[ids], atol=1e-12)
    grads = W.rows_backward(ids, de)
    kept = np.flatnonzero(W.mask) if isinstance(W, Pruned) else None   # pruned entries stay zero
    for name, p in W.params.items():
        assert entrywise(lambda: float(np.sum(W.rows(ids) * de)), p, grads[name], entries=kept) < 1e-8, name
    if kept is not None:
        assert not grads["W"][~W.mask].any()


def test_a_matrix_without_row_lookup_says_so():
    H = Hybrid(np.ones((2, 2)), np.ones((4, 1)), np.ones((1, 2)))
    with pytest.raises(TypeError, match="Hybrid matrix cannot serve as an embedding"):
        H.rows(np.array([0]))


def test_grouped_rejects_bad_factors():
    with pytest.raises(ValueError, match="order must be a permutation of range\\(5\\)"):
        GroupLowRank(np.array([0, 1, 2, 3, 3]), [np.ones((5, 1))], [np.ones((1, 2))])
    with pytest.raises(ValueError, match=r"group 1: U and V must be \(n_g, r_g\) and \(r_g, 2\)"):
        GroupLowRank(np.arange(4), [np.ones((2, 1)), np.ones((2, 1))], [np.ones((1, 2)), np.ones((2, 2))])
    with pytest.raises(ValueError, match="sizes must be positive and sum to the 10 rows"):
        GroupLowRank.init((10, 3), (4, 5), (1, 1))
    with pytest.raises(ValueError, match="each group's rank must be in \\[1, 3\\]"):
        GroupLowRank.init((10, 3), (4, 6), (4, 1))


def test_word_frequencies_smooth_and_check():
    f = gr.word_frequencies(np.array([0, 0, 2]), 4)
    np.testing.assert_allclose(f, np.array([3, 1, 2, 1]) / 7)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 4\)"):
        gr.word_frequencies(np.array([0, 4]), 4)


def test_ranks_meet_the_budget_and_grow_with_frequency():
    sizes, freq = np.array([100, 100, 100, 100]), np.array([1e-2, 1e-3, 1e-4, 1e-5])
    budget = gr.budget_params((400, 50), 6)
    r = gr.group_ranks(sizes, freq, 50, budget)
    cost = r @ (sizes + 50)
    assert cost <= budget and cost > budget - (100 + 50)       # nothing left that buys one more rank
    assert np.all(np.diff(r) <= 0) and r[0] > r[-1]
    with pytest.raises(ValueError, match="below rank 1 in each of the 4 groups"):
        gr.group_ranks(sizes, freq, 50, budget=500)


def zipf_matrix(V=300, H=24, seed=0):
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, V + 1)
    freq = rng.permutation(freq / freq.sum())
    return rng.standard_normal((V, H)), freq


def test_group_reduce_meets_the_budget_and_beats_plain_svd_where_it_matters():
    E, freq = zipf_matrix()
    for c in (4, 8):
        W = gr.group_reduce(E, freq, compression=4, n_groups=c)
        assert W.n_params <= gr.budget_params(E.shape, 4) and W.shape == E.shape
        assert np.argmax(W.ranks) == 0                            # the frequent words' group
    svd = gr.svd_at_budget(E, 4)
    assert svd.n_params <= gr.budget_params(E.shape, 4)
    # in the frequency-weighted norm GroupReduce optimises, on a matrix with no low-rank structure
    assert gr.weighted_error(E, W, freq) < 0.8 * gr.weighted_error(E, svd, freq)


def test_group_factors_are_balanced_like_a_plain_svd():
    # rare words' rows unweighted must not leave U large and V small (SGD on such factors is badly
    # scaled): each group's factors satisfy U^T U = V V^T, and the product is unchanged
    E, freq = zipf_matrix(V=400, H=16, seed=3)
    freq = freq ** 3 / np.sum(freq ** 3)                      # frequencies spanning many decades
    W = gr.group_reduce(E, freq, compression=3, n_groups=4, refine=0)
    for g in range(W.n_groups):
        U, V = W.factors(g)
        np.testing.assert_allclose(U.T @ U, V @ V.T, rtol=1e-8, atol=1e-10)
        words = W.order[np.sum(W.sizes[:g]):np.sum(W.sizes[:g + 1])]
        f = freq[words]
        w = np.sqrt(f)[:, None]
        best = gr.truncated_svd(w * E[words], W.ranks[g])
        np.testing.assert_allclose(U @ V, best.to_dense() / w, rtol=1e-8, atol=1e-8)


def test_refinement_moves_planted_words_home():
    # two groups whose rows live in two different 2-D subspaces; 5 words of each planted in the other
    rng = np.random.default_rng(7)
    H, k = 10, 40
    basis = rng.standard_normal((2, 2, H))
    E = np.concatenate([rng.standard_normal((k, 2)) @ basis[0], rng.standard_normal((k, 2)) @ basis[1]])
    freq = np.concatenate([np.full(k, 2.0), np.full(k, 1.0)])
    swap = np.r_[0:5, k:k + 5]
    E[swap] = E[np.r_[k:k + 5, 0:5]]                            # rows 0-4 now belong to subspace 1
    freq = freq / freq.sum()
    exact = 2 * 2 * (k + H)                                     # rank 2 in each group
    before = gr.group_reduce(E, freq, E.size / exact, n_groups=2, refine=0)
    after = gr.group_reduce(E, freq, E.size / exact, n_groups=2, refine=2)
    assert before.ranks == after.ranks == [2, 2]
    assert gr.weighted_error(E, before, freq) > 0.1
    assert gr.weighted_error(E, after, freq) < 1e-10          # exact once the words are home
    assert set(swap[:5]) <= set(after.order[k:]) and set(swap[5:]) <= set(after.order[:k])


def test_pruning_baseline_keeps_the_budget():
    E, _ = zipf_matrix(V=50, H=8)
    W = gr.prune_at_budget(E, 5)
    assert W.n_params == gr.budget_params(E.shape, 5)
    kept = np.abs(E)[W.mask]
    assert kept.min() >= np.abs(E)[~W.mask].max()


def test_group_reduce_rejects_bad_input():
    E, freq = zipf_matrix(V=40, H=6)
    with pytest.raises(ValueError, match="freq must hold a positive frequency for each of the 40 rows"):
        gr.group_reduce(E, freq[:-1], 4)
    with pytest.raises(ValueError, match="compression must be > 1"):
        gr.group_reduce(E, freq, 1.0)
    with pytest.raises(ValueError, match=r"n_groups must be an integer in \[1, 40\]"):
        gr.group_reduce(E, freq, 4, n_groups=0)
    with pytest.raises(ValueError, match="E must be a 2-D floating matrix"):
        gr.group_reduce(E[0], freq, 4)


def test_budget_state_compares_the_three_and_reports_bad_settings():
    E, freq = zipf_matrix()
    s = gr.budget_state(E, freq, n_groups=5, compression=4)
    assert s.valid and len(s.ranks) == len(s.sizes) == len(s.mean_freq) == 5 and sum(s.sizes) == E.shape[0]
    assert list(s.mean_freq) == sorted(s.mean_freq, reverse=True)           # frequent group first
    assert all(n <= s.budget for n in s.n_params.values()) and s.dense == E.size
    W = gr.group_reduce(E, freq, 4, n_groups=5)                  # refine=1 in both
    assert s.weighted_error["groupreduce"] == pytest.approx(gr.weighted_error(E, W, freq))
    assert s.weighted_error["svd"] == pytest.approx(gr.weighted_error(E, gr.svd_at_budget(E, 4), freq))
    too_many = gr.budget_state(E, freq, n_groups=200, compression=20)
    assert not too_many.valid and "below rank 1" in too_many.error
    assert "compression must be > 1" in gr.budget_state(E, freq, 5, 1.0).error
    assert "must be numbers" in gr.budget_state(E, freq, "five", 4).error
