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
from dkp.course import catalog
from dkp.course import experiments as ex  # noqa: E402
from dkp.course import series
from dkp.course.figures import cma as cma_figures
from dkp.course.figures import curves

SEEDS = 2
# the recipe search (16 arms, half of them unique to it) is left out of the quick runs: its arms are
# the other experiments' under two optimizers, checked by construction below; the notebooks do not
# run it
QUICK = [name for name in catalog.EXPERIMENTS if name != "recipes"]
SEEDS_OF = {name: SEEDS for name in QUICK}


@pytest.fixture(scope="module")
def results():
    # the session's shared quick directory (conftest.py at the top), where the notebooks find these runs
    out = Path(ex.quick_results_dir())
    return out, {name: ex.run_experiment(name, seeds=SEEDS_OF[name], quick_mode=True, out=str(out), jobs=2,
                                         progress=False)
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
                                   "optimizer", "lr"}, (name, arm)
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
        keys = {ex._key(c.to_dict()) for c in recipes.values()}
        assert ex._key(catalog.arms("kp-loss", scale)["dense"].to_dict()) in keys
        assert ex._key(catalog.arms("kp-loss", scale)["kp"].to_dict()) in keys
        assert ex._key(catalog.arms("cma", scale)["doped-kp"].to_dict()) in keys


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
