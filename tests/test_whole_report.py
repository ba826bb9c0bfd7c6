"""The whole model's declared hypotheses (dkp.study.plans.whole_model) and its run values, through
the one engine and printer, on results built by hand."""
import json

import numpy as np

from dkp.study import catalog
from dkp.study.engine import evaluate, verdict_line
from dkp.study.metrics import run_values
from dkp.study.plans import whole_model
from dkp.study.records import Records
from dkp.study.report import markdown


def hypotheses(results):
    return {v.id: v for v in evaluate(whole_model.hypotheses(), Records(results, catalog.planned_seeds))}


def report(results, tmp_path):
    for name, r in results.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({**r, "experiment": name}))
    return markdown(whole_model.STUDY, tmp_path)


def run(seed, valid, vocab_params=1000, switch_after=None, int8_valid=None, lstm_params=500):
    parts = [{"part": "embed", "n_params": vocab_params, "n_bytes": 4 * vocab_params, "dense_params": 6000},
             {"part": "lstm0", "n_params": lstm_params, "n_bytes": 4 * lstm_params, "dense_params": 2000},
             {"part": "dec", "n_params": vocab_params, "n_bytes": 4 * vocab_params, "dense_params": 6000},
             {"part": "biases", "n_params": 100, "n_bytes": 400, "dense_params": 100}]
    n = sum(p["n_params"] for p in parts)
    r = {"seed": seed, "final_valid_ppl": valid, "test_ppl": valid - 3,
         "model": {"parts": parts, "n_params": n, "n_bytes": 4 * n, "compression": 14100 / n},
         "quantized": {"bits": 8, "n_bytes": n + 40, "final_valid_ppl": int8_valid or valid * 1.001,
                       "test_ppl": valid - 3}}
    if switch_after is not None:
        r["switch"] = {"valid_ppl_before": 150.0, "valid_ppl_after": switch_after}
    return r


def family(arms):
    from dkp.study.runner import summarize
    return {"arms": {a: {"runs": runs, "config": {}, "summary": summarize(runs)} for a, runs in arms.items()},
            "command": "python -m dkp experiment x",
            "commit": "0" * 40, "wall_seconds": 60}


def test_run_values_count_the_vocabulary_and_the_int8_model():
    v = run_values(run(0, 120.0, vocab_params=1000, int8_valid=121.2))
    assert np.isclose(v["vocab_compression"], 6.0)
    assert np.isclose(v["int8_cost"], 0.01)
    n = 1000 + 500 + 1000 + 100
    assert np.isclose(v["int8_compression"], 4 * 14100 / (n + 40))


def three(valid, spread=0.5, switch_after=None, **kw):
    # three seeds, valid (and the switch's perplexity) spread by +-spread: sample sd = spread
    return [run(s, valid + spread * (s - 1), **kw,
                switch_after=None if switch_after is None else switch_after + spread * (s - 1)) for s in range(3)]


def test_group_reduce_verdicts_follow_the_rule(tmp_path):
    results = {"groupreduce": family({"groupreduce-6x": three(120.0, switch_after=160.0),
                                      "svd-6x": three(125.0, switch_after=160.2),
                                      "prune-6x": three(121.0, switch_after=170.0)})}
    h = hypotheses(results)
    assert h["G1"].holds is True                        # 5 apart, threshold 2 sqrt(0.5) = 1.41
    assert h["G2"].holds is False                       # 1 apart: within the spread
    assert h["G3"].holds is False                       # 0.2 apart
    assert h["W2"].holds is None and h["Q1"].holds is None   # whole-model not run: undecided
    assert "groupreduce-6x" in report(results, tmp_path)


def test_whole_model_verdicts_and_the_int8_rule():
    arms = {"dense": three(120.0), "doped-kp": three(130.0),
            "doped-kp-teacher": three(129.5), "doped-kp-teacher-ilkd": three(126.0),
            "groupreduce-12x-doped-kp": three(140.0, vocab_params=200, lstm_params=100),
            "groupreduce-12x-doped-kp-ilkd": three(139.0, vocab_params=200, lstm_params=100)}
    results = {"whole-model": family(arms), "groupreduce": family({"svd-6x": three(125.0)})}
    h = hypotheses(results)
    assert h["W1"].holds is True                        # 14100 / 600 = 23.5x
    assert "perplexity against dense (the teacher): +16.7%" in verdict_line(h["W1"])
    assert h["W2"].holds is True and h["W2b"].holds is False and h["W3"].holds is False
    assert h["W2c"].holds is True and not h["W2c"].hypothesis.preregistered   # distillation's own share
    assert "doped-kp-teacher-ilkd vs doped-kp-teacher: difference -3.5 (threshold 1.41)" in verdict_line(h["W2c"])
    assert "(added after the runs, not a planned hypothesis)" in verdict_line(h["W2c"])
    assert h["Q1"].holds is True                        # 0.1% everywhere
    results["whole-model"]["arms"]["dense"]["runs"][1]["quantized"]["final_valid_ppl"] = 120.0 * 1.02
    h = hypotheses(results)
    assert h["Q1"].holds is False and "whole-model/dense" in verdict_line(h["Q1"])


def test_a_diverged_run_is_left_out():
    runs = three(120.0)
    runs[2]["diverged"] = True
    rec = Records({"f": family({"a": runs})}, catalog.planned_seeds)
    assert len(rec.values("f", "a", "valid")) == 2
