"""Every gate matrix against its dense form, finite differences (float64), CMR statistics, caches."""
import numpy as np
import pytest

from dkp.core.gradcheck import entrywise, rel_error
from dkp.core.weights import Doped, Hybrid, Kronecker, LowRank, Pruned, check_factors, stack_caches
from dkp.kernels import sparse

M, N = 12, 10
SCALE = 0.5


def kron(rng, rank=2):
    return Kronecker.init((M, N), ((4, 5), (3, 2)), rank, rng, SCALE, np.float64)


def pruned(rng):
    P = Pruned.init((M, N), rng, SCALE, np.float64)
    P.set_sparsity(0.6)
    return P


def doped(structured, rng, density, **kw):
    return Doped(structured, density, S=rng.standard_normal((M, N)), **kw)


# name -> factory(rng). Doped at density 1 (full: values are the dense S), 0.4 (scattered into a
# dense buffer, BLAS) and 0.05 / dense_above=1 (Numba CSR kernels).
MATRICES = {
    "kron-r1": lambda rng: kron(rng, 1),
    "kron-r2": kron,
    "kron-1x1-factor": lambda rng: Kronecker.init((M, N), ((1, 10), (12, 1)), 1, rng, SCALE, np.float64),
    "lowrank": lambda rng: LowRank.init((M, N), 3, rng, SCALE, np.float64),
    "hybrid": lambda rng: Hybrid.init((M, N), 4, 2, rng, SCALE, np.float64),
    "pruned": pruned,
    "sparse": lambda rng: pruned(rng).to_sparse(),
    "doped-kron-full": lambda rng: doped(kron(rng), rng, 1.0),
    "doped-kron-dense-path": lambda rng: doped(kron(rng), rng, 0.4),
    "doped-kron-csr": lambda rng: doped(kron(rng), rng, 0.05),
    "doped-kron-csr-0.4": lambda rng: doped(kron(rng), rng, 0.4, dense_above=1.0),
    "doped-lowrank": lambda rng: doped(LowRank.init((M, N), 2, rng, SCALE, np.float64), rng, 0.1),
    "doped-hybrid": lambda rng: doped(Hybrid.init((M, N), 3, 2, rng, SCALE, np.float64), rng, 0.2,
                                      dense_above=0.0),
    "doped-kron-cmr-output": lambda rng: doped(kron(rng), rng, 0.3, cmr_p=0.4, dense_above=1.0),
    "doped-kron-cmr-branch": lambda rng: doped(kron(rng), rng, 0.3, cmr_p=0.4, cmr_variant="branch"),
    "doped-lowrank-cmr-connect": lambda rng: doped(LowRank.init((M, N), 2, rng, SCALE, np.float64), rng, 0.3,
                                                   cmr_p=0.4, cmr_variant="connect"),
    # co-matrix dropout without the 1/(1-p) rescaling of what is kept
    "doped-kron-cmr-output-unscaled": lambda rng: doped(kron(rng), rng, 0.3, cmr_p=0.4, cmr_rescale=False),
    "doped-kron-cmr-branch-unscaled": lambda rng: doped(kron(rng), rng, 0.3, cmr_p=0.4, cmr_variant="branch",
                                                        cmr_rescale=False),
    "doped-lowrank-cmr-connect-unscaled": lambda rng: doped(LowRank.init((M, N), 2, rng, SCALE, np.float64), rng,
                                                            0.3, cmr_p=0.4, cmr_variant="connect", cmr_rescale=False),
}
PLAIN = [k for k in MATRICES if "cmr" not in k]


def make(name, seed=0):
    W = MATRICES[name](np.random.default_rng(seed))
    if "cmr" in name:
        W.training = True
    return W


def forward(W, x, seed=7):
    """Forward with this minibatch's dropout masks redrawn from a fixed seed (the same every call)."""
    W.begin_batch(np.random.default_rng(seed))
    return W.forward(x)


def free_entries(W, name):
    """Flat indices of the entries of params[name] that are free parameters (Pruned: the mask)."""
    if isinstance(W, Pruned) and name == "W":
        return np.flatnonzero(W.mask)
    if isinstance(W, Doped) and isinstance(W.structured, Pruned) and name == "W":
        return np.flatnonzero(W.structured.mask)
    return np.arange(W.params[name].size)


def linear_loss(name, batch, rng):
    """(W, loss, grads): the loss sum(forward(W, x) * R) of a random x (batch, N) and R, as a function
    of W's parameters, and W's parameter gradients of it."""
    W = make(name)
    x, R = rng.standard_normal((batch, N)), rng.standard_normal((batch, M))
    loss = lambda: float(np.sum(forward(W, x)[0] * R))  # noqa: E731
    _, cache = forward(W, x)
    return W, loss, W.backward_params(R, cache)


# --- the protocol against the dense matrix ---------------------------------------------------------

@pytest.mark.parametrize("name", PLAIN)
@pytest.mark.parametrize("b", [1, 4])
def test_forward_and_input_gradient_match_dense(name, b, rng):
    W = make(name)
    D = W.to_dense()
    assert D.shape == W.shape == (M, N)
    x, dy = rng.standard_normal((b, N)), rng.standard_normal((b, M))
    y, cache = W.forward(x)
    assert np.allclose(y, x @ D.T, rtol=0, atol=1e-12)
    assert np.allclose(W.backward_input(dy, cache), dy @ D, rtol=0, atol=1e-12)
    dx, grads = W.backward(dy, cache)
    assert np.allclose(dx, dy @ D, rtol=0, atol=1e-12)
    assert set(grads) == set(W.params)
    for k, g in grads.items():
        assert g.shape == W.params[k].shape


@pytest.mark.parametrize("name", list(MATRICES))
def test_parameter_gradients_per_entry(name, rng):
    W, loss, grads = linear_loss(name, 3, rng)
    for k, p in W.params.items():
        g = grads[k].reshape(-1)
        idx = free_entries(W, k)
        assert entrywise(loss, p, grads[k], eps=1e-6, entries=idx) < 1e-6, k
        off = np.setdiff1d(np.arange(p.size), idx)
        assert np.all(g[off] == 0), f"{k}: gradient off the mask"


@pytest.mark.parametrize("name", list(MATRICES))
def test_parameter_gradients_along_random_directions(name, rng):
    W, loss, grads = linear_loss(name, 5, rng)
    eps = 1e-6
    for _ in range(3):
        dirs = {}
        for k, p in W.params.items():
            d = np.zeros(p.size)
            idx = free_entries(W, k)
            d[idx] = rng.standard_normal(len(idx))
            dirs[k] = d.reshape(p.shape)
        analytic = sum(float(np.sum(grads[k] * d)) for k, d in dirs.items())
        for k, d in dirs.items():
            W.params[k] += eps * d
        fp = loss()
        for k, d in dirs.items():
            W.params[k] -= 2 * eps * d
        fm = loss()
        for k, d in dirs.items():
            W.params[k] += eps * d
        assert rel_error(analytic, (fp - fm) / (2 * eps)) < 1e-6


@pytest.mark.parametrize("name", list(MATRICES))
def test_stacked_caches_give_the_summed_gradients(name, rng):
    """backward_params on T steps' caches stacked row-wise == the sum of T per-step gradients."""
    W = make(name)
    W.begin_batch(np.random.default_rng(3))  # one minibatch: "output" masks differ per step
    xs = [rng.standard_normal((2, N)) for _ in range(4)]
    dys = [rng.standard_normal((2, M)) for _ in range(4)]
    caches = [W.forward(x)[1] for x in xs]
    whole = W.backward_params(np.concatenate(dys), stack_caches(caches))
    for k in W.params:
        summed = sum(W.backward_params(dy, c)[k] for dy, c in zip(dys, caches))
        assert np.allclose(whole[k], summed, rtol=1e-12, atol=1e-12), k


# --- bookkeeping ----------------------------------------------------------------------------

def test_n_params_and_n_bytes(rng):
    K = kron(rng)                                            # 2 * (4*5 + 3*2) = 52 numbers
    assert (K.n_params, K.n_bytes) == (52, 52 * 8)
    assert K.astype(np.float32).n_bytes == 52 * 4
    L = LowRank.init((M, N), 3, rng, SCALE, np.float64)      # 3 * (12 + 10)
    assert (L.n_params, L.n_bytes) == (66, 66 * 8)
    H = Hybrid.init((M, N), 4, 2, rng, SCALE, np.float64)    # 4*10 + 2*(8 + 10)
    assert (H.n_params, H.n_bytes) == (76, 76 * 8)
    P = pruned(rng)                                          # 48 of 120 kept, stored as CSR
    assert P.n_params == 48 and P.n_bytes == 48 * 8 + 48 * 4 + (M + 1) * 4
    assert P.to_sparse().n_bytes == P.n_bytes and P.to_sparse().n_params == 48
    Dp = doped(kron(rng), rng, 0.25)                         # 30 of 120 entries of S
    assert Dp.nnz == 30 and Dp.n_params == 52 + 30
    assert Dp.n_bytes == 52 * 8 + 30 * 8 + 30 * 4 + (M + 1) * 4
    assert Dp.indices.dtype == np.int32 and Dp.indptr.dtype == np.int32
    assert Dp.astype(np.float32).n_bytes == 52 * 4 + 30 * 4 + 30 * 4 + (M + 1) * 4


@pytest.mark.parametrize("name", PLAIN)
def test_astype_float32(name, rng):
    W = make(name)
    D64 = W.to_dense()
    W.astype(np.float32)
    assert all(p.dtype == np.float32 for p in W.params.values())
    x = rng.standard_normal((2, N)).astype(np.float32)
    y, _ = W.forward(x)
    assert y.dtype == np.float32
    assert np.allclose(y, x @ D64.T, atol=1e-4)


def test_kronecker_keeps_its_factors_stored_transposed(rng):
    K = kron(rng)
    for k in ("A", "B"):
        assert K.params[k].transpose(0, 2, 1).flags.c_contiguous
    K.params["A"] = np.ascontiguousarray(K.params["A"])     # e.g. replaced by a loader ...
    K._sync()                                                # ... then synced
    assert K.params["A"].transpose(0, 2, 1).flags.c_contiguous


# --- pruning -----------------------------------------------------------------------------------

def test_set_sparsity_keeps_the_largest_and_masks_gradients(rng):
    W0 = rng.standard_normal((M, N))
    P = Pruned(W0.copy())
    mask = P.set_sparsity(0.75)
    assert mask.sum() == 30 and P.n_params == 30
    assert np.abs(W0[mask]).min() > np.abs(W0[~mask]).max()
    assert np.all(P.params["W"][~mask] == 0) and np.array_equal(P.params["W"][mask], W0[mask])
    P.params["W"] += 1.0                                     # an optimizer step moved masked weights
    P.after_update()
    assert np.all(P.params["W"][~mask] == 0)
    for bad in (1.0, -0.1, "x"):
        with pytest.raises(ValueError, match="sparsity"):
            P.set_sparsity(bad)


# --- doping -----------------------------------------------------------------------------------

def test_set_density_keeps_largest_and_returns_the_kept_indices(rng):
    D = doped(kron(rng), rng, 1.0)
    old = D.params["S"].copy()
    S_old = D.sparse_dense()
    keep = D.set_density(0.25)
    assert D.nnz == 30 and D.density == 0.25
    assert np.array_equal(D.params["S"], old[keep])
    S_new = D.sparse_dense()
    kept = S_new != 0
    assert np.array_equal(S_new[kept], S_old[kept])
    assert np.abs(S_old[kept]).min() >= np.abs(S_old[~kept]).max()
    keep2 = D.set_density(0.05)                              # again, from the sparse state
    assert D.nnz == 6 and np.array_equal(D.params["S"], old[keep][keep2])
    with pytest.raises(ValueError, match="only be lowered"):
        D.set_density(0.5)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), "dense"])
def test_density_outside_0_1_is_rejected(bad, rng):
    with pytest.raises(ValueError, match="density"):
        Doped(kron(rng), bad)
    with pytest.raises(ValueError, match="density"):
        Doped(kron(rng), 1.0).set_density(bad)


def test_bad_factor_shapes_are_rejected(rng):
    with pytest.raises(ValueError, match=r"factors A 4x5 and B 3x3 .* 12x10"):
        Kronecker.init((M, N), ((4, 5), (3, 3)), 1, rng)
    with pytest.raises(ValueError, match="factors must be"):
        Kronecker.init((M, N), (4, 5, 3, 2), 1, rng)
    with pytest.raises(ValueError, match="rank"):
        Kronecker.init((M, N), ((4, 5), (3, 2)), 0, rng)
    assert check_factors((M, N), ((4, 5), (3, 2))) == ((4, 5), (3, 2))


def test_other_bad_arguments(rng):
    with pytest.raises(ValueError, match="cmr_variant"):
        Doped(kron(rng), 1.0, cmr_variant="gate")
    with pytest.raises(ValueError, match="cmr_p"):
        Doped(kron(rng), 1.0, cmr_p=1.0)
    with pytest.raises(ValueError, match="rank"):
        LowRank.init((M, N), 11, rng)
    with pytest.raises(ValueError, match="n_dense_rows"):
        Hybrid.init((M, N), 12, 1, rng)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 10\)"):
        kron(rng).forward(np.zeros((2, 9)))
    D = doped(kron(rng), rng, 0.5, cmr_p=0.3)
    D.training = True
    with pytest.raises(RuntimeError, match="begin_batch"):
        D.forward(np.zeros((2, N)))


def test_buffers_round_trip(rng):
    D = doped(Hybrid.init((M, N), 3, 2, rng, SCALE, np.float64), rng, 1.0)
    D.set_density(0.2)
    fresh = Doped(Hybrid.init((M, N), 3, 2, rng, SCALE, np.float64), 1.0)
    fresh.load_buffers(D.buffers)
    for k, p in fresh.params.items():
        p[...] = D.params[k]                                 # how the trainer loads a checkpoint
    assert np.array_equal(fresh.to_dense(), D.to_dense())
    P = pruned(rng)
    Q = Pruned.init((M, N), rng, dtype=np.float64)
    Q.load_buffers(P.buffers)
    Q.params["W"][...] = P.params["W"]
    assert np.array_equal(Q.to_dense(), P.to_dense()) and Q.n_params == P.n_params


def test_s_switch_and_branch_outputs(rng):
    D = doped(kron(rng), rng, 0.3)
    x = rng.standard_normal((4, N))
    y, _ = D.forward(x)
    assert np.allclose(D.structured_forward(x) + D.sparse_forward(x), y, atol=1e-12)
    assert np.allclose(D.sparse_forward(x), x @ D.sparse_dense().T, atol=1e-12)
    D.s_enabled = False
    y_off, cache = D.forward(x)
    assert np.array_equal(y_off, D.structured_forward(x))
    assert np.allclose(D.to_dense(), D.structured.to_dense())
    assert np.all(D.backward_params(np.ones((4, M)), cache)["S"] == 0)


# --- co-matrix dropout ----------------------------------------------------------------------------

def cmr(variant, rng, p=0.3, m=200, n=60, density=0.5):
    structured = LowRank.init((m, n), 4, rng, SCALE, np.float64)
    D = Doped(structured, density, S=rng.standard_normal((m, n)), cmr_p=p, cmr_variant=variant)
    D.training = True
    return D


def test_cmr_output_keep_rate_and_inverted_scaling(rng):
    p = 0.3
    D = cmr("output", rng, p)
    x = rng.standard_normal((50, 60))
    D.begin_batch(np.random.default_rng(0))
    y, cache = D.forward(x)
    mask = cache[-1]
    assert mask.shape == (50, 200)
    assert set(np.unique(mask)) == {0.0, 1 / (1 - p)}
    keep = (mask > 0).mean()                                 # 10,000 Bernoulli(0.7): sd 0.0046
    assert abs(keep - (1 - p)) < 0.02
    assert abs(mask.mean() - 1.0) < 0.03                     # inverted scaling preserves the mean
    s = D.sparse_forward(x)
    assert np.allclose(y, D.structured_forward(x) + mask * s, atol=1e-12)
    y2, cache2 = D.forward(x)                                # a fresh mask on every call
    assert not np.array_equal(cache2[-1], mask)
    # the mean over many draws approaches the no-dropout output
    draws = np.mean([D.forward(x[:2])[0] for _ in range(400)], axis=0)
    D.training = False
    ref = D.forward(x[:2])[0]
    assert np.abs(draws - ref).mean() < 0.1 * np.abs(s[:2]).mean()


def test_cmr_branch_drops_the_whole_minibatch(rng):
    p = 0.3
    D = cmr("branch", rng, p)
    x, dy = rng.standard_normal((8, 60)), rng.standard_normal((8, 200))
    struct, s = D.structured_forward(x), D.sparse_forward(x)
    gen = np.random.default_rng(1)
    dropped = 0
    for _ in range(400):
        D.begin_batch(gen)
        ys, caches = zip(*(D.forward(x) for _ in range(2)))  # two steps of one minibatch
        if np.allclose(ys[0], struct, atol=1e-12):
            dropped += 1
            assert np.allclose(ys[1], struct, atol=1e-12)
            assert np.all(D.backward_params(dy, caches[0])["S"] == 0)
        else:
            assert np.allclose(ys[0], struct + s / (1 - p), atol=1e-12)
            assert np.allclose(ys[1], ys[0], atol=1e-12)
    assert abs(dropped / 400 - p) < 0.1                      # sd 0.023


def test_cmr_connect_masks_the_values(rng):
    p = 0.3
    D = cmr("connect", rng, p)
    x, dy = rng.standard_normal((5, 60)), rng.standard_normal((5, 200))
    D.begin_batch(np.random.default_rng(2))
    c = D._connect
    assert c.shape == (D.nnz,) and set(np.unique(c)) == {0.0, 1 / (1 - p)}
    assert abs((c > 0).mean() - (1 - p)) < 0.03              # 6,000 draws: sd 0.006
    y, cache = D.forward(x)
    S_eff = sparse.csr_to_dense(D.indptr, D.indices, D.params["S"] * c, D.shape)
    assert np.allclose(y, D.structured_forward(x) + x @ S_eff.T, atol=1e-12)
    g = D.backward_params(dy, cache)["S"]
    assert np.all(g[c == 0] == 0) and np.any(g[c > 0] != 0)


@pytest.mark.parametrize("variant", ["output", "branch", "connect"])
def test_evaluation_uses_no_dropout_and_no_scaling(variant, rng):
    D = cmr(variant, rng)
    plain = Doped(D.structured, 1.0, S=D.sparse_dense())    # same W, no CMR
    plain.set_density(D.density)
    x = rng.standard_normal((3, 60))
    D.begin_batch(np.random.default_rng(5))
    D.training = False
    y, cache = D.forward(x)
    assert cache[-1] is None
    assert np.array_equal(y, plain.forward(x)[0])
    assert np.allclose(y, x @ D.to_dense().T, atol=1e-12)


@pytest.mark.parametrize("variant", ["output", "branch", "connect"])
def test_cmr_without_rescaling_keeps_S_unscaled(variant, rng):
    """cmr_rescale=False: the kept part of S enters as it is (no 1/(1-p)), the dropped part is 0."""
    D = cmr(variant, rng, p=0.3)
    D.cmr_rescale = False
    x = rng.standard_normal((6, 60))
    struct, s = D.structured_forward(x), D.sparse_forward(x)
    gen = np.random.default_rng(3)
    for _ in range(20):
        D.begin_batch(gen)
        y, cache = D.forward(x)
        if variant == "connect":
            c = D._connect
            assert set(np.unique(c)) <= {0.0, 1.0}
            S_eff = sparse.csr_to_dense(D.indptr, D.indices, D.params["S"] * c, D.shape)
            assert np.allclose(y, struct + x @ S_eff.T, atol=1e-12)
        else:
            mask = cache[-1]
            assert set(np.unique(mask)) <= {0.0, 1.0}
            assert np.allclose(y, struct + mask * s, atol=1e-12)


def test_cmr_probability_may_change_between_minibatches(rng):
    """A schedule sets cmr_p between minibatches; the next begin_batch draws with the new value."""
    D = cmr("branch", rng, p=0.3)
    x = rng.standard_normal((4, 60))
    struct = D.structured_forward(x)
    D.cmr_p = 0.0
    D.begin_batch(np.random.default_rng(0))
    assert np.allclose(D.forward(x)[0], struct + D.sparse_forward(x), atol=1e-12)   # no dropout at p = 0
    D.cmr_p = 0.9
    gen = np.random.default_rng(1)
    dropped = 0
    for _ in range(200):
        D.begin_batch(gen)
        dropped += np.allclose(D.forward(x)[0], struct, atol=1e-12)
    assert abs(dropped / 200 - 0.9) < 0.07                                          # sd 0.021
