"""The notebooks' shared helpers (dkp.course.notebook): the repository's folders, the sizes an arm
trains to, the one-line structure of a gate matrix."""
import numpy as np
import pytest

from dkp.compression.anneal import Annealer
from dkp.core.data import load_corpus
from dkp.core.weights import Dense, Doped, Kronecker, Pruned
from dkp.study import catalog
from dkp.course.notebook import annealed_model, arm_sizes, repo_root, results_dir, structure_text, wall_time


def test_repo_root_is_found_from_a_subfolder_and_missing_is_explained(tmp_path):
    root = repo_root()
    assert (root / "pyproject.toml").is_file() and repo_root(root / "notebooks") == root
    assert results_dir(root / "dkp") == root / "data" / "results"
    with pytest.raises(FileNotFoundError, match="pyproject.toml"):
        repo_root(tmp_path)


def test_wall_time_of_a_finished_and_an_unfinished_result():
    assert wall_time({"wall_seconds": 600}) == "10 min of wall time"
    assert "no wall time" in wall_time({})


def test_arms_are_sized_after_their_anneal():
    V = len(load_corpus("ptb").vocab)
    scale = catalog.SCALES["course"]
    arms = {a: catalog.quick(c) for a, c in catalog.arms("doping").items()}
    rows = arm_sizes(arms, V, catalog.quick(scale["base"]).hidden)
    for arm, row in rows.items():
        assert row["compression"] >= scale["compression"] * 0.995, arm
    W = rows["doped-kp"]["W"]
    assert isinstance(W, Doped) and abs(W.density - scale["doping"]) < 1e-3
    fresh = annealed_model(arms["doped-kp"], V)
    a = Annealer(arms["doped-kp"], steps_per_epoch=100)
    assert fresh.layers[0].W.nnz == W.nnz and a.end > a.start


def test_structure_text_names_each_kind():
    rng = np.random.default_rng(0)
    kp = Kronecker.init((8, 6), ((4, 3), (2, 2)), rng=rng)
    assert structure_text(kp) == "A 4x3 ⊗ B 2x2"
    assert structure_text(Doped(kp, density=0.5, S=np.ones((8, 6), np.float32))) == "A 4x3 ⊗ B 2x2 + S (24)"
    P = Pruned(rng.standard_normal((8, 6)).astype(np.float32))
    P.set_sparsity(0.5)
    assert structure_text(P) == "50.0% of entries kept"
    assert structure_text(Dense(np.zeros((8, 6), np.float32))) == "dense"


def test_a_demo_training_is_trained_once_per_test_session(ptb, tmp_path, monkeypatch):
    """The second notebook or test that asks for the same config and seed loads the first one's
    model, which equals training it again; outside a test session it always trains."""
    from dkp.study.runner import QUICK_RESULTS_ENV
    from dkp.course.notebook import demo_training
    from dkp.training.configs import get_config
    config = get_config("tiny").with_(hidden=8, train_tokens=4_000, eval_tokens=1_000, epochs=2)
    monkeypatch.delenv(QUICK_RESULTS_ENV, raising=False)
    alone, alone_metrics, source = demo_training(config, seed=1, corpus=ptb)
    assert source == "trained live"
    monkeypatch.setenv(QUICK_RESULTS_ENV, str(tmp_path))
    first, metrics, source = demo_training(config, seed=1, corpus=ptb)
    assert source == "trained live"
    again, loaded, source = demo_training(config, seed=1, corpus=ptb)
    assert source.startswith("trained earlier") and again.epoch == 2
    for k in ("train_ppl", "valid_ppl", "final_valid_ppl", "test_ppl"):
        assert loaded[k] == metrics[k] == alone_metrics[k], k
    for name, p in first.model.params.items():
        np.testing.assert_array_equal(again.model.params[name], p)
        np.testing.assert_array_equal(alone.model.params[name], p)
    _, _, source = demo_training(config, seed=2, corpus=ptb)
    assert source == "trained live"                     # another seed is another run


def test_a_kept_experiment_run_is_the_demo_training_of_its_config(ptb, tmp_path, monkeypatch):
    """run_one(keep=DIR) keeps the trained model where demo_training looks for it: a notebook that
    needs the model of a --quick experiment's run loads it, and it equals training it afresh."""
    from dkp.study.runner import QUICK_RESULTS_ENV, run_dir, run_one
    from dkp.course.notebook import demo_training
    from dkp.training.configs import get_config
    from dkp.training.loop import Trainer
    config = get_config("tiny").with_(hidden=8, train_tokens=4_000, eval_tokens=1_000, epochs=2, structure="kp",
                                      compression=4, doping=0.05, anneal_start=0.2, anneal_end=1.5)
    record = run_one(config.to_dict(), 1, probes={"tokens": 500}, keep=str(tmp_path))
    assert (tmp_path / "models").is_dir() and run_dir(str(tmp_path), config, 1).startswith(str(tmp_path / "models"))
    monkeypatch.setenv(QUICK_RESULTS_ENV, str(tmp_path))
    loaded, metrics, source = demo_training(config, seed=1, corpus=ptb)
    assert source.startswith("trained earlier") and metrics["final_valid_ppl"] == record["final_valid_ppl"]
    fresh = Trainer(config, seed=1, corpus=ptb, progress=False)
    fresh.run()
    for name, p in fresh.model.params.items():
        np.testing.assert_array_equal(loaded.model.params[name], p)


def test_the_check_cells_helpers_follow_the_seed_spread_rule():
    """dkp.course.checks: an arm's mean and sample sd, and the rule 2 sqrt(sd_a^2 + sd_b^2), as the
    notebooks' check cells used to write them out."""
    from dkp.course.checks import arm_seeds, beyond_spread, ends_above, ends_below, seed_stats
    result = {"arms": {"a": {"runs": [{"final_valid_ppl": v} for v in (100.0, 102.0, 104.0)]},
                       "b": {"runs": [{"final_valid_ppl": 110.0}]}}}
    assert seed_stats(result, "a") == (102.0, 2.0) and seed_stats(result, "b") == (110.0, 0.0)
    assert beyond_spread((102.0, 2.0), (110.0, 0.0)) and not beyond_spread((102.0, 2.0), (104.0, 0.5))

    class Records:
        values = {"a": {"valid": [100.0, 102.0, 104.0]}, "b": {"valid": [120.0, 121.0, 122.0]},
                  "c": {"valid": [101.0, 103.0]}}

        def arm_values(self, family, arm):
            return self.values.get(arm, {})

    rec = Records()
    assert arm_seeds(rec, "f", "a") == (102.0, 2.0, 3) and np.isnan(arm_seeds(rec, "f", "x")[0])
    assert ends_above(rec, "f", "a", "b") == (19.0, True) and not ends_above(rec, "f", "b", "a")[1]
    assert ends_below(rec, "f", "b", "a") is True and ends_below(rec, "f", "a", "b") is False
    assert ends_below(rec, "f", "a", "c") is None                       # c has 2 seeds: undecided
