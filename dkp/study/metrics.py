"""The numbers one run's record gives (`run_values`), by name, for the study's tables and
hypotheses: the final perplexities, the co-matrix adaptation search's M1-M6, the course's anneal
checks, the whole model's sizes and its 8-bit storage; and where a run's training loss jumped.

    M1  rise during the anneal: slice perplexity at the last anneal point minus at the first
    M2  cost against the control: slice perplexity at the first grid probe at or after the anneal's
        end, minus the control arm's (S never annealed) at the same probe, same seed
    M3  final validation perplexity (whole split)
    M4  dependence on S: whole-validation perplexity with S off / with S on - 1, at the end
    M5  robustness to pruning S further: slice perplexity with S pruned to 10% of its entries /
        with S intact - 1, at the end
    M6  end-of-anneal perplexity: slice perplexity at the last anneal point
"""
from __future__ import annotations

import numpy as np

# Plain names of the metrics (printed beside their codes)
NAMES = {"M1": "rise during the anneal", "M2": "cost against S never annealed, at the anneal's end",
         "M3": "final validation perplexity", "M4": "dependence on S (perplexity with S off / with S - 1)",
         "M5": "cost of pruning S to 10% of its entries", "M6": "perplexity at the anneal's end",
         "start": "perplexity at the anneal's start", "valid": "final validation perplexity",
         "test": "test perplexity", "compression": "whole-model compression (parameters)",
         "switch_after": "validation perplexity right after the switch", "int8_cost": "8-bit storage's perplexity cost",
         "anneal_rise": "end of the anneal above its lowest point", "s_off_cost": "perplexity with S off / with S - 1",
         "lstm_compression": "LSTM compression"}
VOCAB_PARTS = ("embed", "dec")


def anneal_points(run):
    """The CMA points recorded along the anneal (not the one at the end of training)."""
    return [p for p in run.get("cma", []) if not p.get("final")]


def probe_at(run, epoch):
    """The slice perplexity of the first grid probe at or after `epoch` (None if there is none)."""
    for p in sorted(run.get("probes", []), key=lambda p: p["step"]):
        if p["epoch"] >= epoch - 1e-9:
            return p["ppl"]
    return None


def run_metrics(run, config, hold_run=None):
    """{metric: value} of one finished run; M1, M2, M5 and M6 only where the run recorded them."""
    out = {"M3": run["final_valid_ppl"]}
    along = anneal_points(run)
    if len(along) >= 2:
        out["M1"], out["M6"] = along[-1]["ppl"] - along[0]["ppl"], along[-1]["ppl"]
        out["start"] = along[0]["ppl"]
    if "final_valid_ppl_s_off" in run:
        out["M4"] = run["final_valid_ppl_s_off"] / run["final_valid_ppl"] - 1.0
    if run.get("s_pruned") and run.get("cma"):
        out["M5"] = run["s_pruned"]["0.1"] / run["cma"][-1]["ppl"] - 1.0
    if hold_run is not None and config.get("doping") and config.get("anneal_s", True):
        mine, theirs = probe_at(run, config["anneal_end"]), probe_at(hold_run, config["anneal_end"])
        if mine is not None and theirs is not None:
            out["M2"] = mine - theirs
    return out


def run_values(run, config=None, hold_run=None):
    """{name: value} of every number `run` recorded (see NAMES): the search's M1-M6 where it has
    them, the course's anneal checks, the whole model's sizes and 8-bit storage where recorded."""
    if run.get("diverged"):
        return {}
    out = {"valid": run["final_valid_ppl"], "test": run["test_ppl"]}
    out.update(run_metrics(run, config or {}, hold_run))
    along = anneal_points(run)
    if len(run.get("cma", [])) >= 3 and len(along) >= 2:   # the course's effect 3: per run, along the anneal and at its end
        out["anneal_rise"] = along[-1]["ppl"] - min(p["ppl"] for p in along[:-1])
        out["s_off_cost"] = run["cma"][-1]["ppl_s_off"] / run["cma"][-1]["ppl"] - 1.0
    if run.get("model"):
        out.update(_whole_values(run))
    return out


def _whole_values(run):
    parts = {p["part"]: p for p in run["model"]["parts"]}
    vocab = [parts[k] for k in VOCAB_PARTS if k in parts]    # a tied softmax has no "dec"
    dense_bytes = 4 * sum(p["dense_params"] for p in parts.values())     # the float32 dense model
    out = {"compression": run["model"]["compression"], "n_params": run["model"]["n_params"],
           "n_bytes": run["model"]["n_bytes"],
           "vocab_compression": sum(p["dense_params"] for p in vocab) / sum(p["n_params"] for p in vocab)}
    if run.get("switch"):
        out["switch_before"] = run["switch"]["valid_ppl_before"]
        out["switch_after"] = run["switch"]["valid_ppl_after"]
    if run.get("quantized"):
        q = run["quantized"]
        out["int8_cost"] = q["final_valid_ppl"] / run["final_valid_ppl"] - 1.0
        out["int8_bytes"] = q["n_bytes"]
        out["int8_compression"] = dense_bytes / q["n_bytes"]
    return out


def loss_jump(run, steps_per_epoch=None):
    """Where a run's traced training loss rose most from one 25-step window to the next: {step,
    epoch, rise (nats), density} (density of S from the CMA points, by step)."""
    trace = run.get("loss_trace") or []
    if len(trace) < 2:
        return None
    steps = np.array([s for s, _ in trace])
    loss = np.array([l for _, l in trace])
    i = int(np.argmax(np.diff(loss))) + 1
    spe = steps_per_epoch or run_steps_per_epoch(run)
    along = [p for p in run.get("cma", []) if p["step"] <= steps[i]]
    density = along[-1]["density"] if along else 1.0
    return {"step": int(steps[i]), "epoch": float(steps[i] / spe) if spe else None,
            "rise": float(loss[i] - loss[i - 1]), "density": density}


def run_steps_per_epoch(run):
    """Training steps per epoch of a run, from its grid probes (None without any)."""
    probes = [p for p in run.get("probes", []) if p.get("epoch")]
    return probes[0]["step"] / probes[0]["epoch"] if probes else None
