"""Structured gate matrices inside the full language model: configs -> matrices, honest compression,
float64 gradient checks of the whole model for every matrix type, and resume with a doped model."""
import numpy as np
import pytest

from dkp.compression.structures import gate_factory
from dkp.core.gradcheck import directional, entrywise
from dkp.core.model import LanguageModel
from dkp.core.weights import Doped, Hybrid, Kronecker, LowRank, Pruned
from dkp.training.configs import get_config
from dkp.training.loop import train

V, H, T, B = 11, 8, 3, 2
BASE = get_config("tiny").with_(hidden=H, layers=2)
CASES = {
    "kp": BASE.with_(structure="kp", compression=4),
    "lmf": BASE.with_(structure="lmf", compression=4),
    "hmd": BASE.with_(structure="hmd", compression=3),
    "prune": BASE.with_(structure="prune", compression=4),
    "doped-kp": BASE.with_(structure="kp", compression=3, doping=0.05),
    "doped-lmf-cmr-output": BASE.with_(structure="lmf", compression=3, doping=0.1, cmr_p=0.3),
    "doped-hmd-cmr-connect": BASE.with_(structure="hmd", compression=2, doping=0.1, cmr_p=0.3,
                                        cmr_variant="connect"),
}
KINDS = {"kp": Kronecker, "lmf": LowRank, "hmd": Hybrid, "prune": Pruned}


def model_for(config, seed=0):
    return LanguageModel(V, H, 2, init_scale=0.5, seed=seed, gate_factory=gate_factory(config),
                         dtype=np.float64)


@pytest.mark.parametrize("name", sorted(CASES))
def test_whole_model_gradients_for_every_matrix_type(name):
    config = CASES[name]
    model = model_for(config)
    for layer in model.layers:
        W = layer.W
        if isinstance(W, Doped):      # S as after an anneal: random values on a sparse pattern
            W.params["S"][:] = np.random.default_rng(0).uniform(-0.3, 0.3, W.nnz)
            W.set_density(config.doping)
        if isinstance(W, Pruned):
            W.set_sparsity(0.6)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    state = model.zero_state(B)

    def forward():
        model.set_training(True)
        r = np.random.default_rng(7)  # the same CMR masks at every call
        for layer in model.layers:
            layer.W.begin_batch(r)
        return model.forward(x, state, y)

    def loss():
        return T * forward().loss

    cache = forward().cache
    grads = model.backward(cache, scale=T)
    params = model.params
    assert set(grads) == set(params)
    for k in params:
        if k.startswith("lstm"):
            assert entrywise(loss, params[k], grads[k]) < 1e-6, k
    assert directional(loss, params, grads, np.random.default_rng(2)) < 1e-6


@pytest.mark.parametrize("name", ["kp", "lmf", "hmd"])
def test_structure_and_honest_compression(name):
    config = CASES[name]
    model = model_for(config)
    for layer in model.layers:
        assert isinstance(layer.W, KINDS[name])
        m, n = layer.W.shape
        assert m * n / layer.W.n_params >= config.compression * (1 - 1e-3)


def test_kp_split_picks_the_factor_shapes():
    from dkp.compression import shapes
    from dkp.compression.structures import structured_from_dense
    config = get_config("small").with_(structure="kp", compression=20)   # gate matrices 800 x 400
    for split in shapes.PREFER:
        c = config.with_(kp_split=split)
        W = gate_factory(c)(0, (800, 400), np.random.default_rng(0), 0.1, np.float32)
        want = shapes.kron_shape((800, 400), 20, prefer=split)
        assert (W.params["A"].shape, W.params["B"].shape) == ((1, want.m1, want.n1), (1, want.m2, want.n2)), split
        near = structured_from_dense(c, np.random.default_rng(1).standard_normal((800, 400)))
        assert (near.params["A"].shape, near.params["B"].shape) == (W.params["A"].shape, W.params["B"].shape)
    assert want.m1 == 80 and want.flops < shapes.kron_shape((800, 400), 20).flops   # flops: A 80x200 kron B 10x2


def test_doped_structured_part_leaves_room_for_S():
    config = CASES["doped-kp"]
    W = model_for(config).layers[0].W
    assert isinstance(W, Doped) and W.density == 1.0   # S starts dense (and zero) ...
    np.testing.assert_array_equal(W.params["S"], 0)
    W.set_density(config.doping)                        # ... and, annealed, meets the target
    m, n = W.shape
    assert m * n / W.n_params >= config.compression * (1 - 1e-3)


@pytest.mark.parametrize("changes, match", [
    (dict(structure="tt"), "structure must be one of"),
    (dict(structure="kp", compression=1.0), "compression must be > 1"),
    (dict(structure="kp", compression=4, doping=1.5), "doping must be a density"),
    (dict(structure="prune", compression=4, doping=0.1), "doping applies to kp, lmf and hmd"),
    (dict(structure="kp", compression=50, doping=0.05), "doping density 0.05 alone stores"),
    (dict(structure="kp", compression=4, kp_split="fast"), "kp_split must be one of"),
])
def test_bad_structure_options(changes, match):
    with pytest.raises(ValueError, match=match):
        model_for(BASE.with_(**changes))


def test_resume_with_a_doped_model_is_exact(ptb, tmp_path):
    config = get_config("tiny").with_(hidden=32, train_tokens=30_000, eval_tokens=4_000, epochs=2,
                                      structure="kp", compression=4, doping=0.05, anneal_end=1.5,
                                      anneal_every=5, cmr_p=0.2, optimizer="adam", lr=3e-3)
    straight = train(config, seed=2, out=tmp_path / "a", corpus=ptb, progress=False)
    train(config.with_(epochs=1, anneal_end=1.0), seed=2, out=tmp_path / "b", corpus=ptb, progress=False)
    # the anneal window is part of the config: resuming needs the same one
    with pytest.raises(Exception, match="different config"):
        train(config, seed=2, out=tmp_path / "b", resume=True, corpus=ptb, progress=False)
    train(config.with_(epochs=1), seed=2, out=tmp_path / "c", corpus=ptb, progress=False)
    resumed = train(config, seed=2, out=tmp_path / "c", resume=True, corpus=ptb, progress=False)
    assert resumed["valid_ppl"] == straight["valid_ppl"]
    assert resumed["test_ppl"] == straight["test_ppl"]
    assert straight["layers"][0]["density_of_S"] == pytest.approx(0.05, abs=1e-3)
