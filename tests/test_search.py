"""The co-matrix adaptation search: its arms, what its runs record, and the metrics and verdicts its
declared hypotheses (dkp.study.plans.cma_search) get from the one engine on hand-made results whose
answers are known."""
import pytest

from dkp.study import catalog
from dkp.study import metrics as run_metrics
from dkp.study import report
from dkp.study import runner as ex
from dkp.study.engine import differ, evaluate, verdict_line
from dkp.study.plans import cma_search
from dkp.study.records import Records, failed_runs

P = catalog.SCALES["course"]["cmr_p"]


# --- the arms ------------------------------------------------------------------------------------------
def test_each_family_changes_only_what_it_tests():
    doped = catalog.arms("doping")["doped-kp"].to_dict()
    allowed = {
        "cma-timing": {"anneal_start", "anneal_end", "anneal_s"},
        "cma-density": {"anneal_start", "anneal_end", "doping"},
        "cma-init": {"anneal_start", "anneal_end", "dense_warmup"},
        "cmr-schedule": {"anneal_start", "anneal_end", "cmr_p", "cmr_schedule", "cmr_rescale"},
        "cmr-branch": {"cmr_p", "cmr_variant", "cmr_schedule", "cmr_rescale"},
    }
    for family, fields in allowed.items():
        for arm, config in catalog.search_arms(family).items():
            changed = {k for k, v in config.to_dict().items() if doped[k] != v}
            assert changed <= fields, (family, arm, changed)


def test_shared_arms_are_one_config():
    """late-short and early-long appear in several families with one config, so their runs are shared."""
    late = {ex.run_key(catalog.search_arms(f)["late-short"].to_dict()) for f in ("cma-timing", "cma-density", "cma-init",
                                                                          "cmr-schedule")}
    early = {ex.run_key(catalog.search_arms(f)["early-long"].to_dict()) for f in ("cma-timing", "cma-init", "cmr-branch")}
    assert len(late) == 1 and len(early) == 1
    assert catalog.search_arms("cma-timing")["early-long"] == catalog.arms("cma")["doped-kp"]   # the course's arm


def test_the_windows_and_the_long_scale():
    timing = catalog.search_arms("cma-timing")
    for name, (a, b) in catalog.WINDOWS.items():
        assert (timing[name].anneal_start, timing[name].anneal_end) == (a, b)
    assert not timing["hold"].anneal_s
    long = catalog.search_arms("cma-long")
    assert {c.train_tokens for c in long.values()} == {0} and {c.epochs for c in long.values()} == {3}
    assert long["kp"].optimizer == "adam" and long["dense"].optimizer == "sgd"   # each kind's recipe


def test_quick_keeps_a_searched_window():
    late = catalog.search_arms("cma-timing")["late-short"]
    q = catalog.quick(late)
    assert (q.anneal_start, q.anneal_end) == (1.5, 1.75) and q.train_tokens == catalog.QUICK["train_tokens"]
    course = catalog.quick(catalog.arms("cma")["doped-kp"])
    assert (course.anneal_start, course.anneal_end) == (catalog.QUICK["anneal_start"], catalog.QUICK["anneal_end"])
    assert catalog.quick(catalog.search_arms("cma-long")["dense"]).epochs == 3


def test_unknown_experiment_names_the_choices():
    with pytest.raises(ValueError, match="cma-timing"):
        catalog.experiment_arms("cma-nope")
    assert catalog.default_out("cma-timing").endswith("cma-search") and catalog.default_out("doping").endswith("results")


def test_a_search_run_records_what_the_plan_measures(ptb):
    config = catalog.quick(catalog.search_arms("cmr-schedule")[f"output-p{P:g}-threshold"]).with_(
        hidden=20, train_tokens=8_000, eval_tokens=2_000)
    probes = dict(ex.SEARCH_PROBES, tokens=1_000, stats_tokens=300)
    r = ex.run_one(config.to_dict(), 0, probes)
    spe = 8_000 // (config.batch * config.bptt)
    assert [p["step"] for p in r["probes"]] == [round(k * 0.25 * spe) for k in range(1, 8)] + [2 * spe]
    along = run_metrics.anneal_points(r)
    assert len(along) == probes["cma_points"] and along[0]["density"] == 1.0
    assert along[-1]["density"] == r["cma"][-1]["density"] < 0.02
    assert set(r["s_pruned"]) == {"0.5", "0.2", "0.1"} and r["final_valid_ppl_s_off"] > 1
    assert r["loss_trace"] and all(s % 25 == 0 for s, _ in r["loss_trace"])
    m = run_metrics.run_metrics(r, config.to_dict())
    assert m["M1"] == along[-1]["ppl"] - along[0]["ppl"] and m["M6"] == along[-1]["ppl"]
    assert m["M4"] == r["final_valid_ppl_s_off"] / r["final_valid_ppl"] - 1


# --- metrics and verdicts on hand-made results --------------------------------------------------------
def run(seed, final, start, end, *, off=None, pruned=None, end_epoch=1.75, probe=None, diverged=False):
    """A run record with the fields the search's metrics read."""
    if diverged:
        return {"seed": seed, "diverged": "the training loss became nan", "layers": []}
    return {"seed": seed, "final_valid_ppl": final, "test_ppl": final, "layers": [],
            "final_valid_ppl_s_off": off or final * 1.1,
            "cma": [{"step": 0, "ppl": start, "ppl_s_off": start * 1.2, "density": 1.0},
                    {"step": 1, "ppl": end, "ppl_s_off": end * 1.2, "density": 0.01},
                    {"step": 2, "final": True, "ppl": final, "ppl_s_off": final * 1.1, "density": 0.01}],
            "s_pruned": {"0.1": (pruned or final * 1.05)},
            "probes": [{"step": 10, "epoch": end_epoch, "ppl": probe if probe is not None else end}]}


def family(arms, configs=None):
    base = catalog.search_arms("cma-timing")["late-short"].to_dict()
    out = {"arms": {}}
    for arm, runs in arms.items():
        entry = {"config": {**base, **(configs or {}).get(arm, {})}, "runs": runs}
        entry["summary"] = ex.summarize(runs)
        out["arms"][arm] = entry
    return out


def records(res):
    return Records(res, catalog.planned_seeds, ("cma-timing", "hold"))


def by_id(res, hypotheses=None):
    """{id: Verdict} of the search's hypotheses (or `hypotheses`) on hand-made results `res`."""
    return {v.id: v for v in evaluate(hypotheses or cma_search.hypotheses(), records(res))}


def test_a_rise_beyond_the_spread_holds_and_within_it_does_not():
    rising = [run(s, 200, 190 + s, 230 + s) for s in range(3)]        # +40, sd 1: beyond
    flat = [run(s, 200, 200 + 5 * s, 203 - 5 * s) for s in range(3)]  # +3 with sd 5: within
    h = by_id({"cma-timing": family({"late-short": rising, "early-long": flat})})
    assert h["H1a"].holds is True
    assert h["H1b"].holds is True                                      # early-long does not rise
    assert h["H1c"].holds is None                                      # early-short not run: undecided


def test_cost_against_the_hold_arm_pairs_seeds_at_the_same_epoch():
    late = [run(s, 200, 190, 230, probe=230 + s) for s in range(3)]
    hold = [run(s, 190, 190, 190, probe=200 + s) for s in range(3)]
    res = {"cma-timing": family({"late-short": late, "hold": hold}, {"hold": {"anneal_s": False}})}
    assert records(res).arm_values("cma-timing", "late-short")["M2"] == [30, 30, 30]
    assert "M2" not in records(res).arm_values("cma-timing", "hold")


def test_failed_runs_are_counted_apart_and_leave_the_means():
    runs = [run(0, 200, 190, 200), run(1, 900, 190, 200), run(2, 0, 0, 0, diverged=True)]
    res = family({"a": runs, "b": [run(s, 210, 200, 205) for s in range(3)]})
    failed = failed_runs(res)
    assert [s for s, _ in failed["a"]] == [1, 2] and "b" not in failed
    assert records({"f": res}).arm_values("f", "a")["M3"] == [200]
    assert differ([200], [210, 211, 212]) is None                      # fewer than 3 seeds: undecided


def test_cmr_fixes_only_when_it_lowers_the_rise_without_raising_the_final_perplexity():
    base = [run(s, 200 + s, 190, 240 + s) for s in range(3)]
    good = [run(s, 200 + s, 190, 200 + s) for s in range(3)]           # rise gone, final the same
    costly = [run(s, 260 + s, 190, 200 + s) for s in range(3)]         # rise gone, final much worse
    cmr = {"good": {"cmr_p": 0.3}, "costly": {"cmr_p": 0.3}}
    res = {"cmr-schedule": family({"late-short": base, "good": good, "costly": costly, "no-cmr": good}, cmr)}
    from dkp.study.engine import Any, Hypothesis
    arms = ("good", "costly")
    h = Hypothesis("H4", "fixes", Any(tuple(cma_search.fix("cmr-schedule", a, "late-short") for a in arms)))
    fix = by_id(res, [h])["H4"]
    assert fix.holds is True
    assert {o.label: o.holds for o in fix.outcome.children} == {"good": True, "costly": False}
    h = Hypothesis("H4", "fixes", Any((cma_search.fix("cmr-schedule", "costly", "late-short"),)))
    assert by_id({"cmr-schedule": family({"late-short": base, "costly": costly}, cmr)}, [h])["H4"].holds is False
    # only the arms with co-matrix dropout are candidates (an arm without it may lower the rise too)
    planned = catalog.search_arms("cmr-schedule")
    assert cma_search.dropout_arms("cmr-schedule", "late-short") == [a for a, c in planned.items() if c.cmr_p > 0]
    assert "late-short" not in cma_search.dropout_arms("cmr-schedule", "late-short")


def test_a_cmr_arm_that_trained_in_fewer_seeds_than_planned_decides_nothing():
    """The plan: a mean over fewer than 3 seeds decides nothing. An arm that trained in 1 of 3 makes
    its comparisons undecided, said with the count, never a silent no."""
    base = [run(s, 200, 190, 230 + s) for s in range(3)]
    broken = [run(0, 200, 190, 200), run(1, 900, 190, 900), run(2, 0, 0, 0, diverged=True)]
    cmr = {"output-p0.3-norescale": {"cmr_p": 0.3, "cmr_rescale": False}}
    res = {"cmr-schedule": family({"late-short": base, "output-p0.3-norescale": broken}, cmr)}
    assert records(res).status("cmr-schedule", "output-p0.3-norescale") == "output-p0.3-norescale: trained 1 of 3"
    assert records(res).status("cmr-schedule", "late-short") is None
    h = by_id(res)
    assert h["H4"].holds is None and h["H4a:M1"].holds is None
    assert "output-p0.3-norescale: undecided (output-p0.3-norescale: trained 1 of 3)" in verdict_line(h["H4"])
    # two seeds run, one failed: the third may still train, so still undecided, said so
    res = {"cmr-schedule": family({"late-short": base, "output-p0.3-norescale": broken[1:]}, cmr)}
    assert by_id(res)["H4"].holds is None
    assert "2 of 3 runs in" in verdict_line(by_id(res)["H4"])


def test_a_decided_arm_beside_an_undecided_one_decides_an_any():
    """'Some arm fixes it' holds as soon as one arm does, whatever the undecided arms would show."""
    base = [run(s, 200 + s, 190, 240 + s) for s in range(3)]
    good = [run(s, 200 + s, 190, 200 + s) for s in range(3)]
    broken = [run(0, 200, 190, 200)]
    cmr = {"output-p0.3": {"cmr_p": 0.3}, "output-p0.3-norescale": {"cmr_p": 0.3, "cmr_rescale": False}}
    res = {"cmr-schedule": family({"late-short": base, "output-p0.3": good, "output-p0.3-norescale": broken}, cmr)}
    assert by_id(res)["H4"].holds is True


def test_a_new_family_of_hypotheses_needs_no_new_engine_code():
    """Declaring hypotheses over a new family is data: the engine evaluates them and the printer
    prints them, marked where added after the runs."""
    from dkp.study.engine import All, Compare, Hypothesis, Ref
    fam = family({"small": [run(s, 150 + s, 0, 0) for s in range(3)], "big": [run(s, 180 + s, 0, 0) for s in range(3)]})
    hs = [Hypothesis("T1", "small beats big", Compare(Ref("toy", "small"), Ref("toy", "big"), "lower", label="small vs big")),
          Hypothesis("T2", "big beats small", All((Compare(Ref("toy", "big"), Ref("toy", "small"), "lower"),)),
                     preregistered=False)]
    v = {x.id: x for x in evaluate(hs, Records({"toy": fam}, lambda f: 3))}
    assert v["T1"].holds is True and v["T2"].holds is False
    assert verdict_line(v["T1"]).startswith("- **T1** small beats big: **holds**. small vs big: difference -30")
    assert "(added after the runs, not a planned hypothesis)" in verdict_line(v["T2"])


def test_branch_divergence_verdicts():
    cfg = {"branch-p0.3": {"cmr_p": 0.3, "cmr_variant": "branch"},
           "branch-p0.3-norescale": {"cmr_p": 0.3, "cmr_variant": "branch", "cmr_rescale": False},
           "branch-p0.3-threshold": {"cmr_p": 0.3, "cmr_variant": "branch", "cmr_schedule": "threshold"}}
    bad = run(1, 900, 190, 200)
    bad["loss_trace"] = [[25, 6.0], [50, 5.8], [75, 7.5], [100, 7.4]]
    for point, step in zip(bad["cma"], (0, 500, 1000)):   # S dense at step 0, at 1% from step 500
        point["step"] = step
    rescaled = [run(0, 200, 190, 200), bad, run(2, 201, 190, 200)]
    fine = [run(s, 200, 190, 200) for s in range(3)]
    res = {"cmr-branch": family({"early-long": fine, "branch-p0.3": rescaled, "branch-p0.3-norescale": fine,
                                 "branch-p0.3-threshold": fine}, cfg)}
    h = by_id(res)
    assert h["H5a"].holds is True and h["H5b"].holds is True
    jump = run_metrics.loss_jump(bad, steps_per_epoch=1000)
    assert jump == {"step": 75, "epoch": 0.075, "rise": pytest.approx(1.7), "density": 1.0}


def test_the_report_renders_every_family_and_verdict():
    res = {"cma-timing": family({"late-short": [run(s, 200, 190, 230 + s) for s in range(3)]})}
    res["cma-timing"].update(command="python -m dkp experiment cma-timing", commit="abc", wall_seconds=60)
    import json
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        res["cma-timing"]["experiment"] = "cma-timing"
        (Path(d) / "cma-timing.json").write_text(json.dumps(res["cma-timing"]))
        text = report.markdown(cma_search.STUDY, d)
    assert "### cma-timing" in text and "| late-short | 3 / 3 |" in text
    for hid in ("H1a", "H2a", "H3a", "H4", "H5a", "H6a"):
        assert f"**{hid}" in text


def test_search_figures_are_labelled_and_show_the_means():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from dkp.course import series
    from dkp.course.figures import cma as cma_figures
    late = [run(s, 200, 190, 230 + s) for s in range(3)]
    for r in late:
        r["probes"] = [{"step": 10 * k, "epoch": k / 4, "ppl": 300 - 10 * k + r["seed"]} for k in range(1, 9)]
        r["loss_trace"] = [[25, 6.0], [50, 5.5 + 0.1 * r["seed"]]]
    res = family({"late-short": late, "hold": [dict(r) for r in late]}, {"hold": {"anneal_s": False}})
    epochs, mean, sd, n = series.probe_series(res, "late-short")
    assert n == 3 and list(epochs) == [k / 4 for k in range(1, 9)]
    assert np.allclose(mean, [300 - 10 * k + 1 for k in range(1, 9)]) and np.allclose(sd, 1.0)
    s = series.anneal_series(res, "late-short")
    assert np.allclose(s["ppl"][0], [190, 231, 200]) and np.allclose(s["ppl"][1], [0, 1, 0])
    for ax in (cma_figures.plot_probe_curves(res), cma_figures.plot_anneal_curve(res, arms=["late-short"]),
               cma_figures.plot_loss_traces(res)):
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
        plt.close(ax.figure)
