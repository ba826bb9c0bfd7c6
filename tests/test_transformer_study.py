"""The transformer study (data/results/transformer/PLAN.md) as the catalog builds it and the plan
decides it: the arms' factor shapes, budgets and sizes as the plan states them; the --quick runs
from shrunk teachers, end to end; the verdicts T4 and T7 under the rule, on made-up records."""
import copy
import os
import shutil

import numpy as np
import pytest

from dkp.compression import structures
from dkp.study import catalog, report, runner
from dkp.study.engine import evaluate
from dkp.study.plans import STUDIES, transformer
from dkp.study.records import Records
from dkp.training.configs import get_config
from dkp.training.evaluate import layer_report, model_report
from dkp.training.loop import build_model

K, C, L = catalog.TRANSFORMER
V = 10_000


def arms(name=K):
    return catalog.transformer_arms(name)


def compressed(config):
    """The student `config` trains, built as the switch leaves it (without the teacher's start)."""
    return build_model(config.with_(teacher="", teacher_blocks="", distill_kl=0.0, distill_hidden=0.0,
                                    distill_embed=0.0, distill_attn=0.0), V, 0)


def end_params(config):
    """The whole model's parameters once S (if any) is annealed to its final density."""
    model = compressed(config)
    for W in model.matrices.values():
        if hasattr(W, "set_density"):
            W.set_density(config.doping)
    return model_report(model)["n_params"]


def test_every_arm_on_both_budgets_and_the_light_budget_is_a_tenth_of_one_epoch():
    a = arms()
    names = {"kp-scratch", "kp-teacher", "kp-teacher-ilkd", "doped-teacher", "doped-teacher-ilkd",
             "kp-teacher-ilkd-matched", "distil-half"}
    assert set(a) == {f"{n}-full" for n in names} | {f"{n}-light" for n in names - {"kp-scratch"}}
    teacher = get_config("transformer-course")
    for name, c in a.items():
        assert c.model == "transformer" and (c.hidden, c.heads, c.block_size) == (teacher.hidden, teacher.heads,
                                                                                  teacher.block_size)
        assert (c.optimizer, c.lr, c.weight_decay, c.lr_schedule) == ("adamw", 2e-3, 0.1, "cosine")
        assert c.teacher == ("" if name == "kp-scratch-full" else "@transformer-course")
        light = name.endswith("-light")
        assert (c.train_tokens, c.epochs, c.warmup_steps) == ((92_959, 1, 3) if light else (0, 3, 100))
        if c.doping:    # S re-masked about 25 times over the same share of each budget
            assert (c.anneal_start, c.anneal_end, c.anneal_every) == pytest.approx(
                (0.1, 0.75, 2) if light else (0.3, 2.25, 50))
        assert c.doping == (0.01 if name.startswith("doped") else 0.0)
    ilkd = a["kp-teacher-ilkd-full"]
    assert (ilkd.distill_embed, ilkd.distill_attn, ilkd.distill_hidden, ilkd.distill_kl) == (1.0, 1.0, 1.0, 1.0)
    half = a["distil-half-full"]
    assert (half.layers, half.teacher_blocks, half.distill_kl, half.distill_hidden) == (2, "0,2", 1.0, 0.0)


def test_the_high_compression_has_the_plans_factor_shapes_and_passes_8x():
    c = arms()["kp-teacher-full"]
    model = compressed(c)

    def factors(W):
        return W.params["A"].shape[1:], W.params["B"].shape[1:]
    shapes = {name.split(".", 2)[-1]: factors(W) for name, W in model.matrices.items() if ".0." in name}
    assert shapes == {"attn.qkv": ((64, 64), (6, 2)), "attn.proj": ((32, 32), (4, 4)),
                      "mlp.fc": ((64, 64), (8, 2)), "mlp.proj": ((64, 64), (2, 8))}
    assert factors(model.matrices["embed"]) == ((V, 8), (1, 16))
    teacher = model_report(build_model(get_config("transformer-course"), V, 0))["n_params"]
    assert teacher == 2_091_536
    for arm in ("kp-scratch-full", "kp-teacher-full", "doped-teacher-full", "doped-teacher-ilkd-light"):
        assert teacher / end_params(arms()[arm]) >= 8.0, arm
    doped = compressed(arms()["doped-teacher-full"]).matrices["blocks.0.attn.qkv"]
    assert isinstance(doped.structured, structures.Kronecker) and factors(doped) == ((64, 64), (6, 2))  # kp's, S on top


def test_the_matched_student_and_the_half_depth_student_have_about_the_same_size():
    matched, half = (end_params(arms()[a]) for a in ("kp-teacher-ilkd-matched-full", "distil-half-full"))
    assert abs(matched / half - 1) < 0.10
    W = compressed(arms()["kp-teacher-ilkd-matched-full"]).matrices["blocks.0.attn.proj"]
    assert W.params["A"].shape == (2, 64, 64) and W.params["B"].shape == (2, 2, 2)      # rank 2, B 2 x 2


def test_the_cma_and_lstm_families():
    cma = arms(C)
    assert set(cma) == {"late", "late-output-p0.3", "hold"}
    assert (cma["late"].anneal_start, cma["late"].anneal_end, cma["late"].epochs) == pytest.approx((2.25, 2.5, 3))
    assert cma["late"].anneal_every == 7 and cma["late"].cmr_p == 0.0 and cma["hold"].anneal_s is False
    assert cma["late-output-p0.3"].cmr_p == 0.3 and cma["late-output-p0.3"].anneal_s
    lstm = arms(L)
    assert set(lstm) == {f"doped-kp-teacher{x}-{b}" for x in ("", "-ilkd", "-kl") for b in ("light", "course")}
    course = catalog.arms("doping")["doped-kp"]
    for name, c in lstm.items():
        assert c.teacher == "@small" and (c.hidden, c.compression, c.doping) == (200, 20.0, 0.01)
        expect = (92_959, 1, 0.1, 0.75) if name.endswith("light") else (
            course.train_tokens, course.epochs, course.anneal_start, course.anneal_end)
        assert (c.train_tokens, c.epochs, c.anneal_start, c.anneal_end) == expect
        assert c.anneal_every == (6 if name.endswith("light") else course.anneal_every)
        weights = (1.0, 1.0) if "-ilkd-" in name else (1.0, 0.0) if "-kl-" in name else (0.0, 0.0)
        assert (c.distill_kl, c.distill_hidden) == weights, name
    with pytest.raises(ValueError, match="transformer family must be one of"):
        catalog.transformer_arms("kron")
    with pytest.raises(ValueError, match="scale 'paper' does not apply to kron-transformer"):
        runner.run_experiment(K, scale="paper", out="unused")


def test_quick_arms_and_teachers_are_shrunk_alike():
    q = catalog.quick_transformer(arms()["kp-teacher-light"])
    t = catalog.quick_teacher("transformer-course-quick")
    assert q.teacher == "@transformer-course-quick" and q.hidden == t.hidden == 32 and t.layers == 4
    assert q.train_tokens == 5_000 and t.train_tokens == catalog.QUICK_WHOLE_TOKENS and t.epochs == 3
    assert catalog.quick_teacher("small-quick").epochs == 3 and catalog.quick_teacher("small") == get_config("small")


@pytest.fixture(scope="module")
def quick_runs():
    """Two light arms, one seed, of kron-transformer --quick, from the shrunk teacher trained once,
    in the session's shared quick folder (where notebook 12 finds them)."""
    out = runner.quick_results_dir()
    result = runner.run_experiment(K, seeds=1, quick_mode=True, out=out, progress=False,
                                   only=["kp-teacher-light", "doped-teacher-light"])
    return out, result


def test_quick_runs_record_their_size_against_the_teacher_and_report(quick_runs, tmp_path):
    out, result = quick_runs
    assert os.path.isfile(os.path.join(out, "teachers", "transformer-course-quick-seed0", "checkpoint.npz"))
    teacher = model_report(build_model(catalog.quick_teacher("transformer-course-quick"), V, 0))["n_params"]
    for arm, entry in result["arms"].items():
        run = entry["runs"][0]
        assert entry["teacher_params"] == teacher and entry["n_params"] == run["model"]["n_params"]
        assert entry["compression"] == pytest.approx(teacher / run["model"]["n_params"])
        assert run["quantized"]["bits"] == 8 and run["switch"]["valid_ppl_before"] > 0
    kp, doped = (result["arms"][a]["runs"][0]["switch"] for a in ("kp-teacher-light", "doped-teacher-light"))
    told = result["teachers"]["transformer-course-quick-seed0"]        # the teacher's own record, kept with them
    assert told["final_valid_ppl"] == pytest.approx(kp["valid_ppl_before"], rel=1e-6) and told["epochs"] == 3
    assert kp["valid_ppl_before"] == pytest.approx(doped["valid_ppl_before"])     # the same teacher
    # both lose what the embedding's one-row B drops (the doped one's blocks are the teacher's: test_teacher.py)
    assert kp["valid_ppl_after"] > kp["valid_ppl_before"] and doped["valid_ppl_after"] > doped["valid_ppl_before"]
    text = report.markdown(transformer.STUDY, out, quick=True)
    assert "| kp-teacher-light | 1 / 1 |" in text and "**T2** " in text and "### The teachers" in text
    alone = tmp_path / "alone"                       # a folder of this study's records alone is detected as it
    alone.mkdir()
    shutil.copy(os.path.join(out, f"{K}-quick.json"), alone)
    assert report.detect(str(alone), STUDIES, quick=True) is transformer.STUDY


# --- the plan's verdicts on made-up records -------------------------------------------------------------
def _run(seed, valid, n_params, compression=10.0, teacher=150.0):
    return {"seed": seed, "final_valid_ppl": valid, "test_ppl": valid, "valid_ppl": [valid], "layers": [],
            "switch": {"valid_ppl_before": teacher, "valid_ppl_after": 2 * teacher},
            "model": {"n_params": n_params, "n_bytes": 4 * n_params, "compression": compression,
                      "parts": [{"part": "embed", "dense_params": 1, "n_params": 1}]}}


def _records(values):
    """Records of kron-transformer whose arms end at `values` {arm: (valid per seed, params, x)}."""
    result = {"experiment": K, "arms": {}}
    for arm, (valid, n_params, x) in values.items():
        runs = [_run(s, v, n_params, x) for s, v in enumerate(valid)]
        result["arms"][arm] = {"config": arms()[arm].to_dict(), "runs": runs, "summary": runner.summarize(runs)}
    return Records({K: result}, catalog.planned_seeds)


def _verdict(rec, hid):
    return next(v for v in evaluate(transformer.hypotheses(), rec) if v.id == hid)


def test_t4_is_decided_only_at_about_the_same_size():
    same = {"kp-teacher-ilkd-matched-light": ([150, 151, 152], 1_698_448, 1.2),
            "distil-half-light": ([170, 171, 172], 1_694_992, 1.2)}
    assert _verdict(_records(same), "T4").holds is True
    bigger = copy.deepcopy(same)
    bigger["kp-teacher-ilkd-matched-light"] = ([150, 151, 152], 1_900_000, 1.1)   # 12% more parameters
    assert _verdict(_records(bigger), "T4").holds is None                  # the plan decides it only at one size
    assert "decided only if parameters within 10%" in _verdict(_records(bigger), "T4").outcome.why
    tied = copy.deepcopy(same)
    tied["distil-half-light"] = ([150, 153, 149], 1_694_992, 1.2)
    assert _verdict(_records(tied), "T4").holds is False


def _every_arm(**changes):
    """Every kron-transformer arm ending 34% above its teacher (150), at its plan's size, but `changes`."""
    values = {arm: ([200, 201, 202], 1_694_992, 1.2) if ("matched" in arm or "half" in arm)
              else ([200, 201, 202], 158_608, 13.2) for arm in arms()}
    return _records({**values, **{arm.replace("_", "-"): v for arm, v in changes.items()}})


def test_t7_needs_8x_and_10_percent_of_the_teacher():
    assert _verdict(_every_arm(), "T7").holds is False                    # every arm 34% above the teacher
    near = _every_arm(doped_teacher_ilkd_full=([160, 161, 162], 166_472, 12.6))
    assert _verdict(near, "T7").holds is True                             # 7.3% above, at 12.6x
    small = _every_arm(distil_half_full=([155, 156, 157], 1_694_992, 1.0))
    assert _verdict(small, "T7").holds is False                           # near, but 1x
    waiting = _every_arm(doped_teacher_ilkd_full=([160, 161], 166_472, 12.6))
    assert _verdict(waiting, "T7").holds is None                          # 2 of 3 seeds in: undecided


def test_t7_reads_the_teachers_perplexity_from_the_students_switch():
    rec = _every_arm()
    assert rec.values(K, "kp-teacher-full", "switch_before") == [150.0] * 3
    assert np.isclose(_verdict(rec, "T7").outcome.children[1].children[1].numbers["relative"], 201 / 150 - 1)


def test_the_study_cost_counts_a_shared_run_and_a_teacher_once():
    rec = _every_arm()
    for entry in rec.results[K]["arms"].values():
        for r in entry["runs"]:
            r["seconds"] = 60.0
    rec.results[K]["teachers"] = {"transformer-course-seed0": {"minutes": 8.0}}
    shared = rec.results[K]["arms"]["kp-teacher-full"]           # the same config and seeds in a second family
    late = {"config": {**shared["config"], "name": "late"}, "runs": shared["runs"][:2]}    # another name, same run
    hold = {"config": {**shared["config"], "lr": 0.5}, "runs": [{"seed": 0, "seconds": 120.0}]}
    rec.results[C] = {"experiment": C, "arms": {"late": late, "hold": hold},
                      "teachers": {"transformer-course-seed0": {"minutes": 8.0}}}
    lines = transformer.cost_lines(rec)
    n = len(arms()) * 3
    assert f"- `{K}`: {n} runs, {n} min" in lines
    assert f"- `{C}`: 1 run, 2 min" in lines                     # its two shared runs are kron-transformer's
    assert "- the teachers: 1 trained, 8 min" in lines
    assert f"- in all: {(n + 2 + 8) / 60:.1f} hours" in lines
    assert transformer.cost_lines(Records({}, catalog.planned_seeds)) == []


# --- notebook 12's figures --------------------------------------------------------------------------------
@pytest.mark.usefixtures("close_figures")
def test_the_kept_share_is_one_minus_the_squared_error_and_the_figures_draw_it():
    from dkp.compression.compress import nearest_kronecker_errors, rearrange
    from dkp.course.figures.kron_transformer import kept_energy, plot_kept_energy, plot_students
    from readable import assert_readable
    W = np.random.default_rng(0).standard_normal((12, 6))
    factors = ((4, 3), (3, 2))
    s = np.linalg.svd(rearrange(W, factors), compute_uv=False)
    assert np.allclose(1 - nearest_kronecker_errors(W, factors, [1, 2, 3]) ** 2, kept_energy(s)[:3])
    ax = plot_kept_energy({"random": s, "its transpose": np.linalg.svd(rearrange(W.T, ((3, 4), (2, 3))),
                                                                       compute_uv=False)})
    assert_readable(ax)
    assert ax.get_lines()[0].get_ydata()[0] == pytest.approx(kept_energy(s)[0]) and "rank 1 keeps" in \
        ax.get_legend().get_texts()[0].get_text()
    ax = plot_students({"a": (200.0, 5.0, 13.2), "b": (160.0, 2.0, 12.6)}, 150.0)
    assert_readable(ax)
    height = {t.get_text(): t.get_position()[1] for t in ax.get_yticklabels()}
    assert height["a"] > height["b"]                                      # the first arm on top
    assert any("160.0  (12.6x)" in t.get_text() for t in ax.texts)


def _family(family, values, **extra):
    """A record of `family` whose arms end at `values` {arm: [valid per seed]}, each run given `extra`
    {arm: {field: [per seed]}} (the search's probes, S off)."""
    arms_of = catalog.transformer_arms(family)
    result = {"experiment": family, "arms": {}}
    for arm, valid in values.items():
        runs = []
        for seed, v in enumerate(valid):
            run = _run(seed, v, 100_000)
            for key, per_seed in extra.get(arm, {}).items():
                run[key] = per_seed[seed]
            runs.append(run)
        result["arms"][arm] = {"config": arms_of[arm].to_dict(), "runs": runs}
    return family, result


def _cma_run_fields(start, end, s_off, valid):
    """The fields the co-matrix adaptation metrics read: two anneal points and S off at the end."""
    return {"cma": [[{"step": 0, "epoch": 2.25, "ppl": a, "ppl_s_off": a}, {"step": 1, "epoch": 2.5, "ppl": b, "ppl_s_off": b},
                     {"step": 2, "epoch": 3, "ppl": v, "ppl_s_off": v * (1 + o), "final": True}]
                    for a, b, o, v in zip(start, end, s_off, valid)],
            "final_valid_ppl_s_off": [v * (1 + o) for v, o in zip(valid, s_off)]}


def test_t8_t9_read_the_rise_and_the_dependence_on_s():
    late = _cma_run_fields([150, 151, 152], [180, 182, 181], [0.2, 0.25, 0.22], [160, 161, 162])
    hold = _cma_run_fields([150, 151, 152], [149, 150, 151], [0.5, 0.5, 0.5], [158, 159, 160])
    drop = _cma_run_fields([152, 153, 154], [160, 161, 160], [0.04, 0.05, 0.04], [161, 160, 162])
    family, result = _family(C, {"late": [160, 161, 162], "hold": [158, 159, 160], "late-output-p0.3": [161, 160, 162]},
                             late=late, hold=hold, **{"late-output-p0.3": drop})
    rec = Records({family: result}, catalog.planned_seeds, control=(C, "hold"))
    assert _verdict(rec, "T8").holds is True and _verdict(rec, "T9").holds is True
    weak = _cma_run_fields([150, 151, 152], [180, 182, 181], [0.2, 0.04, 0.22], [160, 161, 162])   # one seed: 4%
    family, result = _family(C, {"late": [160, 161, 162], "hold": [158, 159, 160]}, late=weak, hold=hold)
    assert _verdict(Records({family: result}, catalog.planned_seeds), "T8").holds is False


def test_l1_l2_compare_the_course_budget_and_report_the_light_one():
    values = {"doped-kp-teacher-course": [140, 141, 142], "doped-kp-teacher-ilkd-course": [130, 131, 130],
              "doped-kp-teacher-kl-course": [141, 140, 142], "doped-kp-teacher-light": [150, 151, 152],
              "doped-kp-teacher-ilkd-light": [150, 152, 151], "doped-kp-teacher-kl-light": [140, 141, 140]}
    family, result = _family(L, values)
    rec = Records({family: result}, catalog.planned_seeds)
    l1, l2 = _verdict(rec, "L1"), _verdict(rec, "L2")
    assert l1.holds is True and l2.holds is False                         # decided on the course budget
    assert l1.reported[0].holds is False and l2.reported[0].holds is True  # the light budget, reported beside
    assert transformer.headline({v.id: v for v in evaluate(transformer.hypotheses(), rec)})["L2"] == \
        transformer.SAYS["L2"][1]


def test_refresh_recomputes_what_a_record_derives_from_its_runs(quick_runs):
    out, result = quick_runs
    path = os.path.join(out, f"{K}-quick.json")
    from dkp.core import io
    stale = io.load_json(path)
    for entry in stale["arms"].values():
        entry["compression"], entry["summary"] = 0.0, {}
    stale.pop("teachers")
    io.save_json(path, stale)
    again = runner.refresh_record(K, out=out, quick_mode=True)
    for arm, entry in again["arms"].items():
        assert entry["compression"] == pytest.approx(result["arms"][arm]["compression"])
        assert entry["summary"] == result["arms"][arm]["summary"] and entry["runs"] == result["arms"][arm]["runs"]
    assert again["teachers"] == result["teachers"] and again["commit"] == result["commit"] and "refreshed" in again


def test_a_student_far_above_another_still_counts_in_this_study():
    """The study's arms differ by design (13x and 1.2x): a run fails here only by diverging."""
    values = {"kp-teacher-light": ([660, 690, 700], 158_608, 13.2), "distil-half-light": ([160, 162, 164], 1_694_992, 1.2)}
    rec = _records(values)                                         # the default rule: 4x the best arm, not trained
    assert rec.status(K, "kp-teacher-light") == "kp-teacher-light: trained 0 of 3"
    study_rec = report.records_of(transformer.STUDY, rec.results)
    assert study_rec.status(K, "kp-teacher-light") is None
    rec.results[K]["arms"]["kp-teacher-light"]["runs"][1] = {"seed": 1, "diverged": "loss is nan", "valid_ppl": []}
    assert report.records_of(transformer.STUDY, rec.results).status(K, "kp-teacher-light") == \
        "kp-teacher-light: trained 2 of 3"
