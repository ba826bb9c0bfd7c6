"""The metrics of one run of the co-matrix adaptation search (M1-M6, see `dkp.course.search`), which
runs failed (diverged, or did not train), and where a run's training loss jumped."""
from __future__ import annotations

import math

import numpy as np

NOT_TRAINED = 2.0   # a final perplexity above this multiple of the family's lowest arm mean


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


def failed_runs(result):
    """{arm: [(seed, why)]} of the runs that diverged or did not train."""
    done = [e["summary"]["final_valid_ppl"]["mean"] for e in result["arms"].values()
            if e.get("summary", {}).get("final_valid_ppl")]
    lowest = min(done) if done else math.inf
    out = {}
    for arm, entry in result["arms"].items():
        for r in entry["runs"]:
            if r.get("diverged"):
                out.setdefault(arm, []).append((r["seed"], "diverged: " + r["diverged"]))
            elif r["final_valid_ppl"] > NOT_TRAINED * lowest:
                out.setdefault(arm, []).append((r["seed"], f"did not train: final validation perplexity "
                                                           f"{r['final_valid_ppl']:.1f}"))
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
