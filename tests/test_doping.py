"""Annealing of S (and of pruning masks) during training, and the co-matrix adaptation diagnostics."""
import numpy as np
import pytest

from dkp.compression.anneal import Annealer
from dkp.compression.cmr import cmr_probability
from dkp.compression.schedules import cubic_schedule
from dkp.core.optim import Adam
from dkp.core.weights import Dense, Doped
from dkp.study.probes import (CMATracker, PerplexityProbe, branch_statistics, perplexity,
                                    perplexity_s_pruned)
from dkp.training.configs import get_config
from dkp.training.evaluate import evaluate
from dkp.training.loop import Trainer, train

CONFIG = get_config("tiny").with_(hidden=16, train_tokens=20_000, eval_tokens=3_000, epochs=2,
                                  structure="kp", compression=4, doping=0.02, anneal_start=0.5,
                                  anneal_end=1.5, anneal_every=7)


class Spy:
    """A hook that records each doped layer's density before every update."""
    def __init__(self):
        self.seen = []

    def __call__(self, trainer, step):
        self.seen.append((step, trainer.model.layers[0].W.density))


@pytest.fixture(scope="module")
def annealed(ptb):
    spy = Spy()
    trainer = Trainer(CONFIG, seed=0, corpus=ptb, progress=False, hooks=[spy])
    trainer.run()
    return trainer, spy


def test_density_follows_the_cubic_schedule_then_freezes(annealed):
    trainer, spy = annealed
    a = trainer.find_hook(Annealer)
    mn = np.prod(trainer.model.layers[0].W.shape)
    for step, density in spy.seen:
        if step < a.start:
            assert density == 1.0
        elif step >= a.end:
            assert density == round(CONFIG.doping * mn) / mn          # frozen at the target
        else:
            last = a.start + (step - a.start) // a.every * a.every    # the latest re-masking step
            assert density == round(cubic_schedule(last, a.start, a.end, 1.0, CONFIG.doping) * mn) / mn
    assert trainer.history["density"][-1] == pytest.approx(CONFIG.doping, abs=1 / mn)


def test_annealing_keeps_the_largest_entries(ptb):
    trainer = Trainer(CONFIG, seed=0, corpus=ptb, progress=False)
    W = trainer.model.layers[0].W
    W.params["S"][:] = np.random.default_rng(0).standard_normal(W.nnz)
    before = W.sparse_dense()
    annealer = trainer.find_hook(Annealer)
    annealer.apply(trainer.model, annealer.start + annealer.every, trainer.optimizer)
    after = W.sparse_dense()
    kept = after != 0
    assert np.abs(before[kept]).min() >= np.abs(before[~kept]).max()
    np.testing.assert_array_equal(after[kept], before[kept])


def test_adam_moments_follow_the_kept_entries(ptb):
    trainer = Trainer(CONFIG.with_(optimizer="adam", lr=1e-3), seed=0, corpus=ptb, progress=False)
    assert isinstance(trainer.optimizer, Adam)
    W = trainer.model.layers[0].W
    trainer.optimizer.m["lstm0.S"] = np.arange(W.nnz, dtype=np.float32)
    trainer.optimizer.v["lstm0.S"] = np.ones(W.nnz, np.float32)
    W.params["S"][:] = np.random.default_rng(0).standard_normal(W.nnz)
    old_S = W.params["S"].copy()
    annealer = trainer.find_hook(Annealer)
    annealer.apply(trainer.model, annealer.end, trainer.optimizer)
    m = trainer.optimizer.m["lstm0.S"]
    assert m.shape == W.params["S"].shape == (round(CONFIG.doping * W.shape[0] * W.shape[1]),)
    # m held each entry's old position: the moments kept belong to the entries kept
    np.testing.assert_array_equal(old_S[m.astype(int)], W.params["S"])


def test_pruning_reaches_its_compression(ptb):
    config = CONFIG.with_(structure="prune", doping=0.0, compression=5)
    trainer = Trainer(config, seed=0, corpus=ptb, progress=False)
    trainer.run()
    W = trainer.model.layers[0].W
    m, n = W.shape
    assert m * n / W.n_params == pytest.approx(5, rel=1e-2)
    assert np.count_nonzero(W.params["W"]) == W.n_params


def test_s_off_perplexity_equals_a_model_without_S(annealed, ptb):
    trainer, _ = annealed
    model = trainer.model
    ids = ptb.valid[:2000]
    off = perplexity(model, ids, 10, 20, s_enabled=False)
    on = perplexity(model, ids, 10, 20)
    assert model.layers[0].W.s_enabled                 # restored
    assert on == evaluate(model, ids, 10, 20)
    saved = model.layers[0].W.params["S"].copy()
    model.layers[0].W.params["S"][:] = 0
    try:
        assert off == pytest.approx(evaluate(model, ids, 10, 20), rel=1e-6)
    finally:
        model.layers[0].W.params["S"][:] = saved
    assert off != on


def test_branch_statistics_match_a_direct_computation(annealed, ptb):
    trainer, _ = annealed
    model = trainer.model
    ids = ptb.valid[:400]
    (stats,) = branch_statistics(model, ids, 4, 10)
    # recompute from the gate inputs [x_t, h_(t-1)] of one window by hand
    W = model.layers[0].W
    from dkp.core.data import batchify, bptt_windows
    state = model.zero_state(4)
    rows = []
    for x, y in bptt_windows(batchify(ids, 4), 10):
        _, _, state, cache = model.forward(x, state, y)
        rows += [s[0][0] for s in cache["steps"][0]]
    xh = np.concatenate(rows).astype(np.float64)
    a = xh @ W.structured.to_dense().T.astype(np.float64)
    s = xh @ W.sparse_dense().T.astype(np.float64)
    assert stats["norm_structured"] == pytest.approx(np.linalg.norm(a, axis=1).mean(), rel=1e-4)
    assert stats["norm_sparse"] == pytest.approx(np.linalg.norm(s, axis=1).mean(), rel=1e-4)
    cos = np.sum(a * s, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(s, axis=1))
    assert stats["cosine"] == pytest.approx(cos.mean(), rel=1e-3, abs=1e-5)
    assert 0 < stats["sparse_share"] < 1


def test_cma_tracker_records_along_the_anneal(ptb):
    trainer = Trainer(CONFIG, seed=0, corpus=ptb, progress=False)
    tracker = CMATracker(trainer.find_hook(Annealer), ptb.valid[:1000], points=4, batch=5, bptt=20)
    trainer.hooks.append(tracker)
    trainer.run()
    record = trainer.history["cma"]
    assert [p["step"] for p in record] == tracker.steps and len(record) == 4
    densities = [p["density"] for p in record]
    assert densities[0] == 1.0 and densities == sorted(densities, reverse=True)
    assert all(p["ppl"] > 1 and p["ppl_s_off"] > 1 for p in record)


def test_annealer_rejects_an_empty_window():
    with pytest.raises(ValueError, match="anneal_end .* must be after anneal_start"):
        Annealer(CONFIG.with_(anneal_start=1.0, anneal_end=1.0), 100)


# --- the search's knobs: no anneal, the schedule of p, the dense warm-up, the probes --------------

def test_without_annealing_S_stays_dense(ptb):
    spy = Spy()
    trainer = Trainer(CONFIG.with_(anneal_s=False, train_tokens=8_000), seed=0, corpus=ptb, progress=False, hooks=[spy])
    trainer.run()
    assert {d for _, d in spy.seen} == {1.0}
    # the structured part is the one the annealed arm has: same factors, same size
    annealed = Trainer(CONFIG, seed=0, corpus=ptb, progress=False).model.layers[0].W.structured
    assert trainer.model.layers[0].W.structured.n_params == annealed.n_params


@pytest.mark.parametrize("schedule, expected", [
    ("constant", [0.3, 0.3, 0.3, 0.3]),
    ("threshold", [0.0, 0.0, 0.3, 0.3]),               # threshold 0.1: on at and below it
    ("density", [0.0, 0.3 * 0.5 / 0.98, 0.3 * 0.9 / 0.98, 0.3]),
])
def test_cmr_probability_follows_its_schedule(schedule, expected):
    config = CONFIG.with_(cmr_p=0.3, cmr_schedule=schedule, cmr_threshold=0.1)
    got = [cmr_probability(config, d) for d in (1.0, 0.5, 0.1, CONFIG.doping)]
    assert got == pytest.approx(expected, abs=1e-15)


def test_the_schedule_sets_p_from_the_density_during_training(ptb):
    seen = []
    config = CONFIG.with_(cmr_p=0.3, cmr_schedule="threshold", cmr_threshold=0.1, train_tokens=8_000, anneal_every=3)
    trainer = Trainer(config, seed=0, corpus=ptb, progress=False,
                      hooks=[lambda t, step: seen.append((t.model.layers[0].W.density, t.model.layers[0].W.cmr_p))])
    trainer.run()
    assert {p for d, p in seen if d > 0.1} == {0.0}
    assert {p for d, p in seen if d <= 0.1} == {0.3}


def test_dense_warmup_switches_to_the_equal_doped_model(ptb):
    """At the switch, each dense W becomes nearest KP + S = W - KP (S dense): the same function."""
    config = CONFIG.with_(dense_warmup=0.5)
    trainer = Trainer(config, seed=0, corpus=ptb, progress=False)
    assert all(isinstance(layer.W, Dense) for layer in trainer.model.layers)
    model = trainer.model.astype(np.float64)
    x = ptb.train[:40].reshape(20, 2)
    y = ptb.train[1:41].reshape(20, 2)
    _, before, _, _ = model.forward(x, model.zero_state(2), y)
    dense = [layer.W.to_dense() for layer in model.layers]
    trainer.switch(trainer.warmup.convert(trainer.model, trainer.train_ids))
    _, after, _, _ = model.forward(x, model.zero_state(2), y)
    assert after == pytest.approx(before, rel=1e-12)
    for layer, W in zip(model.layers, dense):
        assert isinstance(layer.W, Doped) and layer.W.density == 1.0
        np.testing.assert_allclose(layer.W.to_dense(), W, atol=1e-12)
        # the structured part is the nearest Kronecker product: S is orthogonal to it (Frobenius)
        kp, S = layer.W.structured.to_dense(), layer.W.sparse_dense()
        assert abs(np.sum(kp * S)) < 1e-9 * np.linalg.norm(kp) * np.linalg.norm(S)


def test_dense_warmup_trains_then_anneals_and_resumes_exactly(ptb, tmp_path):
    config = CONFIG.with_(dense_warmup=0.5, anneal_start=0.6, train_tokens=8_000, anneal_every=3)
    straight = train(config, seed=2, out=tmp_path / "a", corpus=ptb, progress=False)
    train(config.with_(epochs=1), seed=2, out=tmp_path / "b", corpus=ptb, progress=False)
    resumed = train(config, seed=2, out=tmp_path / "b", resume=True, corpus=ptb, progress=False)
    assert resumed["valid_ppl"] == straight["valid_ppl"]
    assert straight["layers"][0]["kind"] == "Doped"
    assert straight["density"][-1] == pytest.approx(CONFIG.doping, abs=1e-3)


def test_probes_fall_on_the_same_epochs_whatever_the_anneal(ptb):
    steps = {}
    short = CONFIG.with_(train_tokens=8_000)  # 20 steps an epoch
    for name, config in (("late", short.with_(anneal_start=1.2, anneal_end=1.8)), ("hold", short.with_(anneal_s=False))):
        trainer = Trainer(config, seed=0, corpus=ptb, progress=False)
        trainer.hooks.append(PerplexityProbe(ptb.valid[:500], 0.25, batch=5, bptt=20))
        trainer.run()
        steps[name] = [p["step"] for p in trainer.history["probes"]]
        spe = trainer.steps_per_epoch
        assert steps[name] == [round(k * 0.25 * spe) for k in range(1, 8)]
    assert steps["late"] == steps["hold"]


def test_pruning_S_further_leaves_the_model_as_it_was(annealed, ptb):
    trainer, _ = annealed
    model, ids = trainer.model, ptb.valid[:1000]
    W = model.layers[0].W
    before = (W.indptr.copy(), W.indices.copy(), W.params["S"].copy(), perplexity(model, ids, 5, 20))
    nnz = W.nnz
    pruned = perplexity_s_pruned(model, ids, 5, 20, 0.1)
    assert W.nnz == nnz and perplexity(model, ids, 5, 20) == before[3]
    for a, b in zip(before[:3], (W.indptr, W.indices, W.params["S"])):
        np.testing.assert_array_equal(a, b)
    assert pruned != before[3]
