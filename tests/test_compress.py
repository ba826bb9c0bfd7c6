"""From a dense W: nearest Kronecker products, truncated SVD, pruning, hybrid, residual -> S."""
import numpy as np
import pytest

from dkp.compression import compress
from dkp.core.weights import Doped, Kronecker, LowRank

FACTORS = ((4, 3), (5, 2))          # W is 20 x 6; R(W) is 12 x 10


def fro(a):
    return float(np.linalg.norm(a))


def test_rearrangement_turns_kron_into_an_outer_product(rng):
    A, B = rng.standard_normal((4, 3)), rng.standard_normal((5, 2))
    R = compress.rearrange(np.kron(A, B), FACTORS)
    assert R.shape == (12, 10)
    assert np.allclose(R, np.outer(A.ravel(), B.ravel()), atol=1e-14)
    W = rng.standard_normal((20, 6))   # ||W - A kron B|| == ||R(W) - vec A vec B^T||
    assert np.isclose(fro(W - np.kron(A, B)), fro(compress.rearrange(W, FACTORS) - np.outer(A.ravel(), B.ravel())))


@pytest.mark.parametrize("rank", [1, 2])
def test_nearest_kronecker_recovers_an_exact_product(rank, rng):
    A, B = rng.standard_normal((rank, 4, 3)), rng.standard_normal((rank, 5, 2))
    W = Kronecker(A, B).to_dense()
    K = compress.nearest_kronecker(W, FACTORS, rank)
    assert isinstance(K, Kronecker) and K.rank == rank
    assert np.allclose(K.to_dense(), W, atol=1e-12)
    if rank == 1:  # unique up to a scalar: A kron B == (cA) kron (B/c)
        ratio = K.params["A"][0] / A[0]
        assert np.allclose(ratio, ratio.flat[0])


def test_nearest_kronecker_error_is_the_svd_tail_and_decreases_with_rank(rng):
    W = rng.standard_normal((20, 6))
    s = np.linalg.svd(compress.rearrange(W, FACTORS), compute_uv=False)
    errors = [fro(W - compress.nearest_kronecker(W, FACTORS, r).to_dense()) for r in range(1, 11)]
    for r, e in enumerate(errors, start=1):
        assert np.isclose(e, np.sqrt(np.sum(s[r:] ** 2)), atol=1e-10)
    assert all(a > b for a, b in zip(errors, errors[1:-1]))
    assert errors[-1] < 1e-10                                # rank min(12, 10) is exact


def test_nearest_kronecker_beats_perturbed_factors(rng):
    W = rng.standard_normal((20, 6))
    K = compress.nearest_kronecker(W, FACTORS)
    best = fro(W - K.to_dense())
    for _ in range(20):
        A = K.params["A"] + 0.01 * rng.standard_normal(K.params["A"].shape)
        B = K.params["B"] + 0.01 * rng.standard_normal(K.params["B"].shape)
        assert fro(W - Kronecker(A, B).to_dense()) > best


def test_nearest_kronecker_keeps_dtype_and_rejects_bad_arguments(rng):
    W = rng.standard_normal((20, 6)).astype(np.float32)
    assert compress.nearest_kronecker(W, FACTORS).dtype == np.float32
    with pytest.raises(ValueError, match="factors"):
        compress.nearest_kronecker(W, ((4, 3), (5, 3)))
    with pytest.raises(ValueError, match="rank"):
        compress.nearest_kronecker(W, FACTORS, 11)


@pytest.mark.parametrize("rank", [1, 3, 6])
def test_truncated_svd_is_optimal(rank, rng):
    W = rng.standard_normal((15, 9))
    L = compress.truncated_svd(W, rank)
    assert isinstance(L, LowRank) and L.rank == rank
    s = np.linalg.svd(W, compute_uv=False)
    err = fro(W - L.to_dense())
    assert np.isclose(err, np.sqrt(np.sum(s[rank:] ** 2)), atol=1e-10)   # Eckart-Young
    for _ in range(10):  # any other rank-r matrix nearby is worse
        U = L.params["U"] + 0.01 * rng.standard_normal(L.params["U"].shape)
        assert fro(W - U @ L.params["V"]) > err


def test_hybrid_from_dense(rng):
    W = rng.standard_normal((15, 9))
    H = compress.hybrid_from_dense(W, 5, 2)
    D = H.to_dense()
    assert np.array_equal(D[:5], W[:5])
    assert np.allclose(D[5:], compress.truncated_svd(W[5:], 2).to_dense(), atol=1e-12)
    with pytest.raises(ValueError, match="n_dense_rows"):
        compress.hybrid_from_dense(W, 15, 2)


@pytest.mark.parametrize("density", [0.05, 0.25, 1.0])
def test_residual_overlay_keeps_the_largest_residual_entries_at_exact_density(density, rng):
    W = rng.standard_normal((20, 6))                         # 120 entries: 6, 30, 120 kept
    K = compress.nearest_kronecker(W, FACTORS)
    D = compress.residual_overlay(W, K, density)
    assert isinstance(D, Doped) and D.structured is K
    assert D.nnz == round(density * 120) and D.density == density
    residual = W - K.to_dense()
    S = D.sparse_dense()
    on = np.zeros(S.shape, bool)
    on.flat[np.ravel_multi_index((np.repeat(np.arange(20), np.diff(D.indptr)), D.indices), S.shape)] = True
    assert on.sum() == D.nnz
    assert np.allclose(S[on], residual[on], atol=1e-14)
    if density < 1:
        assert np.abs(residual[on]).min() >= np.abs(residual[~on]).max()
    # W - (KP + S) is the residual off the pattern: less error than the KP alone, none at density 1
    assert np.allclose(W - D.to_dense(), np.where(on, 0, residual), atol=1e-12)
    assert fro(W - D.to_dense()) < fro(residual) or density == 0
    with pytest.raises(ValueError, match="one shape"):
        compress.residual_overlay(W[:10], K, density)


def test_nearest_kronecker_errors_are_the_relative_svd_tail(rng):
    W = rng.standard_normal((20, 6)).astype(np.float32)
    s = np.linalg.svd(compress.rearrange(W.astype(np.float64), FACTORS), compute_uv=False)
    errors = compress.nearest_kronecker_errors(W, FACTORS, range(1, 11))
    assert np.allclose(errors, [np.sqrt(np.sum(s[r:] ** 2) / np.sum(s ** 2)) for r in range(1, 11)], atol=1e-12)
    assert errors[-1] < 1e-12                                # float64 inside: exact, not float32 noise
    with pytest.raises(ValueError, match="all zeros"):
        compress.nearest_kronecker_errors(np.zeros((20, 6)), FACTORS, [1])
