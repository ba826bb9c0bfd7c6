"""The named experiments: their arms, and the outputs of the --quick versions (run once per session,
two seeds, two worker processes, into the directory the notebooks reuse), and the plots drawn from them."""
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dkp.compression import shapes  # noqa: E402
from dkp.compression.kron_view import gate_shape
from dkp.study import catalog
from dkp.study import runner as ex  # noqa: E402
from dkp.course import series
from dkp.course.figures import cma as cma_figures
from dkp.course.figures import curves

SEEDS = 2
# the recipe search (16 arms, half of them unique to it) is left out of the quick runs: its arms are
# the other experiments' under two optimizers, checked by construction below; the notebooks do not
# run it
# kp-splits is left out too: its kp arm is doping's, and kp-flops differs from it by the split alone
# (checked below); it ran at the course scale
QUICK = [name for name in catalog.EXPERIMENTS if name not in ("recipes", "kp-splits")]
SEEDS_OF = {name: SEEDS for name in QUICK}


@pytest.fixture(scope="module")
def results():
    # the session's shared quick directory (conftest.py at the top), where the notebooks find these runs
    out = Path(ex.quick_results_dir())
    # the trained models are kept too: a notebook that needs a run's model (05's explorer) loads it
    return out, {name: ex.run_experiment(name, seeds=SEEDS_OF[name], quick_mode=True, out=str(out), jobs=2,
                                         progress=False, keep_models=True)
                 for name in QUICK}


def test_arms_differ_only_in_what_they_test():
    for scale in catalog.SCALES:
        base = catalog.SCALES[scale]["base"].to_dict()
        factor_recipe = catalog.SCALES[scale]["factor_optimizer"]
        for name in catalog.EXPERIMENTS:
            if name == "recipes":
                continue
            for arm, config in catalog.arms(name, scale).items():
                changed = {k for k, v in config.to_dict().items() if base[k] != v}
                assert changed <= {"structure", "compression", "doping", "cmr_p", "cmr_variant", "hidden",
                                   "optimizer", "lr", "kp_split"}, (name, arm)
                # only the kinds of arm the scale lists leave the base recipe, for the factor recipe
                kind = ("doped-" if config.doping else "") + config.structure
                recipe = {"optimizer": config.optimizer, "lr": config.lr}
                expected = (factor_recipe if kind in catalog.SCALES[scale]["factor_recipe_for"]
                            else {"optimizer": base["optimizer"], "lr": base["lr"]})
                assert recipe == expected, (scale, name, arm)


def test_recipes_try_every_kind_of_arm_under_both_recipes():
    for scale in catalog.SCALES:
        recipes = catalog.arms("recipes", scale)
        base = catalog.SCALES[scale]["base"]
        sgd, adam = {"optimizer": base.optimizer, "lr": base.lr}, catalog.SCALES[scale]["factor_optimizer"]
        kinds = {arm.rsplit("-", 1)[0] for arm in recipes}
        assert kinds == {"dense", "prune", "kp", "lmf", "hmd", "doped-kp", "doped-lmf", "doped-hmd"}
        for kind in kinds:
            a, b = recipes[f"{kind}-sgd"].to_dict(), recipes[f"{kind}-adam"].to_dict()
            assert {k for k in a if a[k] != b[k]} == {"optimizer", "lr"}
            assert {"optimizer": a["optimizer"], "lr": a["lr"]} == sgd and {"optimizer": b["optimizer"], "lr": b["lr"]} == adam
        # the arms of the other experiments are among them, so their runs are shared
        keys = {ex.run_key(c.to_dict()) for c in recipes.values()}
        assert ex.run_key(catalog.arms("kp-loss", scale)["dense"].to_dict()) in keys
        assert ex.run_key(catalog.arms("kp-loss", scale)["kp"].to_dict()) in keys
        assert ex.run_key(catalog.arms("cma", scale)["doped-kp"].to_dict()) in keys


def test_kp_splits_differ_by_the_split_alone():
    for scale in catalog.SCALES:
        splits = catalog.arms("kp-splits", scale)
        doping = catalog.arms("doping", scale)
        m, n = gate_shape(catalog.SCALES[scale]["base"].hidden)
        for arm, config in splits.items():
            plain = arm.removesuffix("-flops")
            assert config.with_(kp_split="rank") == doping[plain]    # the same arm as doping's, run once
            target = shapes.structured_target((m, n), config.compression, config.doping) if config.doping \
                else config.compression
            split = shapes.kron_shape((m, n), target, prefer=config.kp_split)
            if arm.endswith("-flops"):
                rank_split = shapes.kron_shape((m, n), target)
                assert split != rank_split and split.flops < rank_split.flops and split.max_rank < rank_split.max_rank
    # at the course scale doped KP's Kronecker part (25x of an 800 x 400 matrix) has one split family
    assert set(catalog.arms("kp-splits", "course")) == {"kp", "kp-flops"}
    assert set(catalog.arms("kp-splits", "paper")) == {"kp", "kp-flops", "doped-kp", "doped-kp-flops"}


def test_shrunk_dense_has_the_compressed_parameter_count():
    config = catalog.SCALES["course"]["base"]
    for c in (10, 20, 25):
        h = catalog.shrunk_hidden(config, c)
        # H' = H / sqrt(c) rounded to an integer: off by at most half a unit, so the parameter ratio
        # is off by at most (1 + 0.5 / H')^2 - 1
        assert abs((config.hidden / h) ** 2 / c - 1) <= (1 + 0.5 / h) ** 2 - 1


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="experiment must be one of"):
        catalog.arms("nope")
    with pytest.raises(ValueError, match="unknown arm"):
        ex.run_experiment("doping", quick_mode=True, only=["nope"], out="unused")
    with pytest.raises(ValueError, match="scale must be one of"):
        ex.run_experiment("doping", scale="huge", out="unused")


def test_quick_results_are_complete(results):
    out, res = results
    for name, result in res.items():
        on_disk = json.loads((out / f"{name}-quick.json").read_text())
        assert on_disk == json.loads(json.dumps(result))
        assert result["quick"] and result["scale"] == "course" and result["command"] and "commit" in result
        assert set(result["arms"]) == set(catalog.arms(name))
        for arm, entry in result["arms"].items():
            assert entry["seeds"] == list(range(SEEDS_OF[name]))
            assert entry["config"]["hidden"] == catalog.quick(catalog.arms(name)[arm]).hidden
            for run in entry["runs"]:
                assert len(run["valid_ppl"]) == len(run["train_ppl"]) == entry["config"]["epochs"]
                assert np.isfinite(run["final_valid_ppl"]) and np.isfinite(run["test_ppl"])
            vals = [r["final_valid_ppl"] for r in entry["runs"]]
            assert entry["summary"]["final_valid_ppl"]["mean"] == pytest.approx(np.mean(vals))
            assert entry["summary"]["final_valid_ppl"]["std"] == pytest.approx(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
            assert entry["n_params"] > 0 and entry["n_bytes"] > 0


def test_quick_compression_is_as_configured(results):
    """Every compressed arm meets the target; shapes pick the least compression >= target that the
    matrix allows (a 200 x 100 gate matrix has no Kronecker split between 20x and 24x)."""
    _, res = results
    methods = res["methods"]["arms"]
    target = catalog.SCALES["course"]["compression"]
    for arm, entry in methods.items():
        # the quick gate matrices (200 x 100) are coarse: one rank of a low-rank factor is 300
        # parameters, 30% of the 1,000 a 20x target allows, so an arm may land up to that far above it
        assert target * (1 - shapes.RTOL) <= entry["compression"] < 1.3 * target, arm
        if entry["config"]["doping"]:
            for run in entry["runs"]:
                assert all(layer["density_of_S"] == pytest.approx(0.01, abs=1e-3) for layer in run["layers"])
    assert res["kp-loss"]["arms"]["dense"]["compression"] == 1.0


def test_quick_cma_record_follows_the_anneal(results):
    _, res = results
    for name in ("cma", "cmr"):
        for arm, entry in res[name]["arms"].items():
            for run in entry["runs"]:
                d = [p["density"] for p in run["cma"]]
                assert d[0] == 1.0 and d == sorted(d, reverse=True) and d[-1] == pytest.approx(0.01, abs=1e-3)
                assert run["cma"][-1]["final"]
                for p in run["cma"]:
                    assert p["ppl"] > 1 and p["ppl_s_off"] > 1
                    assert all(0 <= layer["sparse_share"] <= 1 for layer in p["layers"])
    assert "final_ppl_s_off" in res["cma"]["arms"]["doped-kp"]["summary"]


def test_rerunning_skips_finished_runs(results, monkeypatch):
    out, _ = results
    monkeypatch.setattr(ex, "run_one", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = ex.run_experiment("doping", seeds=SEEDS, quick_mode=True, out=str(out), progress=False)
    assert again["arms"]["kp"]["seeds"] == list(range(SEEDS))


def _labelled(ax):
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    if len(ax.lines) + len(ax.patches) > 1:
        assert ax.get_legend() is not None


def test_plots_from_quick_results(results):
    _, res = results
    for name, result in res.items():
        _labelled(curves.plot_arms(result, reference="dense" if name == "kp-loss" else None))
        _labelled(curves.plot_arm_curves(result))
    _labelled(cma_figures.plot_cma(res["cma"]))
    _labelled(cma_figures.plot_branch_share(res["cmr"]))
    assert len(series.arm_table(res["methods"])) == len(catalog.arms("methods"))
    plt.close("all")


def test_plot_command_writes_a_png(results, tmp_path):
    from dkp.__main__ import main
    out, _ = results
    for kind in ("arms", "curves", "cma", "share"):
        png = tmp_path / f"{kind}.png"
        assert main(["plot", kind, str(out / "cma-quick.json"), "--out", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_command(results, capsys):
    from dkp.__main__ import main
    out, _ = results
    assert main(["report", str(out), "--quick"]) == 0
    text = capsys.readouterr().out
    assert "### kp-loss" in text and "### The effects" in text


# --- where the runs execute (dkp.study.executors) -------------------------------------------------
def _fake_run(config_dict, seed, probes=None, label=None, keep=None, teacher_root=None, fail=()):
    """A stand-in for run_one that trains nothing: a run's record, its numbers from the seed; it
    raises for the (structure, doping, seed) in `fail`."""
    from dkp.training.evaluate import layer_report
    from dkp.training.loop import build_model
    config = ex.Config.from_dict(config_dict)
    if (config.structure, config.doping, seed) in fail:
        raise RuntimeError("boom")
    model = build_model(config, 50, seed)
    return {"seed": seed, "final_valid_ppl": 100.0 + seed, "test_ppl": 90.0 + seed, "valid_ppl": [100.0 + seed],
            "train_ppl": [120.0], "epochs": 1, "layers": layer_report(model)}


def test_a_failed_run_is_reported_and_a_rerun_runs_only_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "run_one", lambda *a: _fake_run(*a, fail=[("kp", 0.0, 1)]))
    with pytest.raises(ex.RunsFailed, match=r"1 of 6 run\(s\) of doping failed: kp seed 1 \(RuntimeError: boom\)"):
        ex.run_experiment("doping", seeds=2, quick_mode=True, out=str(tmp_path), progress=False)
    saved = json.loads((tmp_path / "doping-quick.json").read_text())   # every other run is saved
    assert {arm: e["seeds"] for arm, e in saved["arms"].items() if e["runs"]} == {
        "kp": [0], "doped-kp": [0, 1], "doped-kp-cmr": [0, 1]}
    ran = []
    monkeypatch.setattr(ex, "run_one", lambda config_dict, seed, *a: ran.append(seed) or _fake_run(config_dict, seed))
    again = ex.run_experiment("doping", seeds=2, quick_mode=True, out=str(tmp_path), progress=False)
    assert ran == [1] and again["arms"]["kp"]["seeds"] == [0, 1]
    # what the call did, for a notebook to say: one run trained now, five reused; the file says it too
    assert (again["last_call"]["trained"], again["last_call"]["reused"]) == (1, 5)
    assert json.loads((tmp_path / "doping-quick.json").read_text())["last_call"] == again["last_call"]


def test_a_call_stopped_midway_keeps_its_wall_time_and_the_next_call_adds_to_it(tmp_path, monkeypatch):
    """The record's wall time is written with each landed run: a call stopped after its first run
    (here by an interrupt in the second) leaves that time in the file, and resuming adds to it."""
    import time
    calls = []

    def slow_then_stop(config_dict, seed, *a):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        time.sleep(0.05)
        return _fake_run(config_dict, seed)
    monkeypatch.setattr(ex, "run_one", slow_then_stop)
    with pytest.raises(KeyboardInterrupt):
        ex.run_experiment("doping", seeds=1, quick_mode=True, out=str(tmp_path), progress=False, only=["kp", "doped-kp"])
    stopped = json.loads((tmp_path / "doping-quick.json").read_text())
    assert [a for a, e in stopped["arms"].items() if e["runs"]] == ["kp"] and stopped["wall_seconds"] >= 0.05
    monkeypatch.setattr(ex, "run_one", _fake_run)
    again = ex.run_experiment("doping", seeds=1, quick_mode=True, out=str(tmp_path), progress=False,
                              only=["kp", "doped-kp"])
    assert again["wall_seconds"] > stopped["wall_seconds"] and again["arms"]["doped-kp"]["seeds"] == [0]


def test_any_executor_runs_the_experiment(tmp_path, monkeypatch):
    """Anything with submit() returning futures: a thread pool here, run_one stubbed."""
    from concurrent.futures import ThreadPoolExecutor
    monkeypatch.setattr(ex, "run_one", _fake_run)
    with ThreadPoolExecutor(2) as pool:
        result = ex.run_experiment("doping", seeds=2, quick_mode=True, out=str(tmp_path), progress=False,
                                   executor=pool)
    assert all(e["seeds"] == [0, 1] for e in result["arms"].values())
    with pytest.raises(ValueError, match="executor must have a submit"):
        ex.run_experiment("doping", quick_mode=True, out=str(tmp_path), executor=object())


def test_dask_runs_equal_the_process_pool_and_survive_a_killed_worker(results, tmp_path):
    """A LocalCluster of two single-threaded workers runs doping's kp arm (--quick, seeds 0 and 1);
    one worker is killed while both runs train. Dask starts the lost run again on a live worker, the
    experiment completes, the results file is valid, and every run equals the process pool's run of
    the same seed (the `results` fixture, --jobs 2): the seed, not the worker, decides a run. A
    rerun then has nothing to run. (A run reported as failed, and a rerun that runs only it, is
    tested above with a stub, which needs no cluster.)"""
    import os
    import signal
    import threading
    import time

    import distributed

    out, _ = results
    pooled = json.loads((out / "doping-quick.json").read_text())["arms"]["kp"]["runs"]
    killed = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        def kill_one_worker_mid_run():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                busy = [w for w, tasks in client.processing().items() if tasks]
                if len(busy) == 2:   # both runs started: let them load and start training, then kill one
                    time.sleep(1)
                    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.2)

        killer = threading.Thread(target=kill_one_worker_mid_run)
        killer.start()
        full = ex.run_experiment("doping", seeds=2, quick_mode=True, out=str(tmp_path), progress=False,
                                 only=["kp"], executor=client.get_executor(pure=False))
        killer.join()
    assert killed, "no worker was killed: the runs ended before both had started"
    assert json.loads((tmp_path / "doping-quick.json").read_text()) == json.loads(json.dumps(full))
    runs = full["arms"]["kp"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    for mine, theirs in zip(runs, pooled):
        for key in ("train_ppl", "valid_ppl", "final_valid_ppl", "test_ppl"):
            assert mine[key] == theirs[key], key

    class Refuses:
        def submit(self, *a):
            raise AssertionError("a finished run was submitted again")
    ex.run_experiment("doping", seeds=2, quick_mode=True, out=str(tmp_path), progress=False, only=["kp"],
                      executor=Refuses())


def test_scheduler_without_dask_says_how_to_install(monkeypatch):
    import builtins
    from dkp.study import executors
    real_import = builtins.__import__

    def no_dask(name, *a, **k):
        if name.split(".")[0] in ("distributed", "dask"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ImportError, match=r'pip install "dkp\[cluster\]"'):
        with executors.executor(scheduler="local"):
            pass


def test_an_unreachable_scheduler_is_named():
    import dask

    from dkp.study import executors
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(OSError, match=r"--scheduler 'tcp://127.0.0.1:9': could not reach a Dask scheduler"):
            with executors.executor(scheduler="tcp://127.0.0.1:9"):
                pass
