"""The results report: tables of every experiment and a verdict on each of the course's four effects,
computed from the JSON files that `python -m dkp experiment` writes.

    python -m dkp report [DIR]        # markdown on stdout (DIR defaults to data/results)

A difference counts as beyond the seed spread when it exceeds twice the standard deviation of a
difference of two single runs, 2 * sqrt(sd_a^2 + sd_b^2), the seeds' sample standard deviations.
The comparisons are fixed in advance (the arms named below), not picked as the best of a sweep.
"""
from __future__ import annotations

import math
import os

import numpy as np

from dkp.core import io
from dkp.course.catalog import EXPERIMENTS, arms


def load_results(directory, quick=False, names=None):
    """{experiment name: result} for every NAME.json (or NAME-quick.json) in `directory`, NAME among
    `names` (default: the course's experiments)."""
    out = {}
    for name in names or EXPERIMENTS:
        path = os.path.join(directory, f"{name}{'-quick' if quick else ''}.json")
        if os.path.exists(path):
            out[name] = io.load_json(path)
    return out


def mean_sd(values):
    """{"mean", "std" (sample sd, 0 for one value), "n"} of a list of numbers: a run summary's shape."""
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def stat(result, arm, key="final_valid_ppl"):
    """(mean, sd, n) of `key` over the seeds of `arm`, or None if the arm has no runs."""
    entry = result.get("arms", {}).get(arm) if result else None
    if not entry or not entry.get("summary"):
        return None
    s = entry["summary"][key]
    return s["mean"], s["std"], s["n"]


def compare(a, b):
    """Relative difference of means (b over a) and whether it is beyond the seed spread."""
    (ma, sa, _), (mb, sb, _) = a, b
    return {"relative": mb / ma - 1.0, "difference": mb - ma, "threshold": 2 * math.sqrt(sa ** 2 + sb ** 2),
            "beyond_spread": abs(mb - ma) > 2 * math.sqrt(sa ** 2 + sb ** 2)}


def effects(results):
    """The four effects, each {claim, holds, numbers...}; an effect whose data is missing says so."""
    out = []
    kl, dp, cma, cmr, me = (results.get(k) for k in ("kp-loss", "doping", "cma", "cmr", "methods"))
    dense, kp = stat(kl, "dense"), stat(kl, "kp")

    def missing(claim, *needed):
        """Record that `claim` lacks data; needed: (experiment, arm) pairs it compares."""
        absent = [f"{e}/{a}" for e, a in needed if not stat(results.get(e), a)]
        out.append({"claim": claim, "holds": None, "why": "not run yet: " + ", ".join(absent or [n[0] for n in needed])})

    claim = "1. KP compression of the LSTM layers loses accuracy (KP worse than dense beyond the seed spread)"
    if dense and kp:
        c = compare(dense, kp)
        out.append({"claim": claim, "holds": c["relative"] > 0 and c["beyond_spread"], **c,
                    "dense": dense, "kp": kp})
    else:
        missing(claim, ("kp-loss", "dense"), ("kp-loss", "kp"))

    claim = "2. Doping wins it back: doped KP (with CMR) within 5% of dense, and better than KP beyond the spread"
    doped = stat(dp, "doped-kp-cmr")
    if dense and doped and stat(dp, "kp"):
        to_dense, to_kp = compare(dense, doped), compare(stat(dp, "kp"), doped)
        out.append({"claim": claim, "holds": to_dense["relative"] <= 0.05 and to_kp["relative"] < 0 and to_kp["beyond_spread"],
                    "relative_to_dense": to_dense["relative"], "relative_to_kp": to_kp["relative"],
                    "kp_beyond_spread": to_kp["beyond_spread"], "dense": dense, "doped": doped})
    else:
        missing(claim, ("kp-loss", "dense"), ("doping", "kp"), ("doping", "doped-kp-cmr"))

    claim = ("3. Without CMR, perplexity rises as S is annealed (the anneal ends above the lowest perplexity "
             "reached during it, for every seed) and the model depends on S (at the end, perplexity with S "
             "switched off more than 10% above perplexity with S, for every seed)")
    runs = (cma or {}).get("arms", {}).get("doped-kp", {}).get("runs") or []
    if runs and all(len(r.get("cma", [])) >= 3 for r in runs):
        along = [[p["ppl"] for p in r["cma"] if not p.get("final")] for r in runs]
        lowest = [min(a[:-1]) for a in along]
        end_of_anneal = [a[-1] for a in along]
        last = [r["cma"][-1]["ppl"] for r in runs]
        off = [r["cma"][-1]["ppl_s_off"] for r in runs]
        rises = all(e > m for e, m in zip(end_of_anneal, lowest))
        depends = all(o > 1.1 * p for o, p in zip(off, last))
        out.append({"claim": claim, "holds": rises and depends, "rises": rises, "depends_on_S": depends,
                    "lowest_ppl_during_anneal": lowest, "ppl_at_end_of_anneal": end_of_anneal,
                    "final_ppl": last, "final_ppl_s_off": off})
    else:
        missing(claim, ("cma", "doped-kp"))

    claim = "4. CMR fixes it: with co-matrix dropout (output, p as configured) the final perplexity is better"
    no_cmr = stat(cmr, "doped-kp")
    p = next((a for a in (cmr or {}).get("arms", {}) if a.startswith("output-p0.3")), None)
    with_cmr = stat(cmr, p) if p else None
    if no_cmr and with_cmr:
        c = compare(no_cmr, with_cmr)
        out.append({"claim": claim, "holds": c["relative"] < 0 and c["beyond_spread"], **c, "arm": p,
                    "without": no_cmr, "with": with_cmr})
    else:
        missing(claim, ("cmr", "doped-kp"), ("cmr", "output-p0.3"))

    claim = "5. Doped KP beats pruning, LMF and HMD at the same compression"
    if me and stat(me, "doped-kp"):
        rows = {}
        for arm in ("prune", "lmf", "hmd"):
            if stat(me, arm):
                rows[arm] = compare(stat(me, arm), stat(me, "doped-kp"))
        out.append({"claim": claim, "holds": bool(rows) and all(r["relative"] < 0 and r["beyond_spread"] for r in rows.values()),
                    "against": rows})
    else:
        missing(claim, ("methods", "doped-kp"))
    return out


def split_verdict(result, plain="kp"):
    """The kp-splits experiment's question for arm `plain` (kp or doped-kp): is the split of the
    fewest multiply-adds (`plain`-flops) as accurate as the split of the largest reachable rank
    (`plain`), within the seed spread? {"rank", "flops": (mean, sd, n) of the final validation
    perplexity, "relative", "difference", "threshold", "beyond_spread", "verdict"}; verdict is
    "as accurate", "less accurate" or "more accurate", or None while either arm has fewer than 3 seeds."""
    a, b = stat(result, plain), stat(result, f"{plain}-flops")
    if not a or not b or min(a[2], b[2]) < 3:
        return {"rank": a, "flops": b, "verdict": None}
    c = compare(a, b)
    verdict = ("as accurate" if not c["beyond_spread"] else
               "less accurate" if c["difference"] > 0 else "more accurate")
    return {"rank": a, "flops": b, **c, "verdict": verdict}


def untrained_runs(result, factor=2.0):
    """Runs that did not train: final validation perplexity above `factor` times the lowest arm
    mean of the experiment. [(arm, seed, final validation perplexity, after the first epoch)]."""
    means = [e["summary"]["final_valid_ppl"]["mean"] for e in result["arms"].values() if e.get("summary")]
    if not means:
        return []
    bar = factor * min(means)
    return [(arm, r["seed"], r["final_valid_ppl"], r["valid_ppl"][0])
            for arm, e in result["arms"].items() for r in e.get("runs", []) if r["final_valid_ppl"] > bar]


# The kinds of arm the `recipes` experiment tries, and the arm of a named experiment that uses each.
RECIPE_ARMS = {"dense": ("kp-loss", "dense"), "prune": ("methods", "prune"), "kp": ("kp-loss", "kp"),
               "lmf": ("methods", "lmf"), "hmd": ("methods", "hmd"), "doped-kp": ("cma", "doped-kp"),
               "doped-lmf": ("methods", "doped-lmf"), "doped-hmd": ("methods", "doped-hmd")}


def recipe_search(recipes, scale="course"):
    """One row per kind of arm of the `recipes` experiment: its final validation perplexity (mean
    over the seeds run) under SGD and under Adam, the optimizer the scale's experiments give that
    kind, and whether that is the better of the two (None while a recipe has no run)."""
    rows = []
    for kind, (experiment, arm) in RECIPE_ARMS.items():
        ppl = {}
        for recipe in ("sgd", "adam"):
            entry = (recipes or {}).get("arms", {}).get(f"{kind}-{recipe}") or {}
            ppl[recipe] = entry["summary"]["final_valid_ppl"]["mean"] if entry.get("summary") else None
        used = arms(experiment, scale)[arm].optimizer
        better = None if None in ppl.values() else ppl[used] == min(ppl.values())
        rows.append({"kind": kind, "sgd": ppl["sgd"], "adam": ppl["adam"], "used": used, "better": better})
    return rows


def markdown(results):
    lines = []
    for name, result in results.items():
        lines += [f"### {name}", "", f"`{result.get('command', '')}` (commit {str(result.get('commit'))[:10]}, "
                  f"{result.get('wall_seconds', 0) / 60:.0f} min wall)", "",
                  "| arm | LSTM compression | seeds | valid ppl (mean ± sd) | test ppl (mean ± sd) |",
                  "|---|---|---|---|---|"]
        for arm, entry in result["arms"].items():
            s = entry.get("summary")
            if not s:
                continue
            v, t = s["final_valid_ppl"], s["test_ppl"]
            lines.append(f"| {arm} | {entry['compression']:.1f}x | {v['n']} | {v['mean']:.2f} ± {v['std']:.2f} | "
                         f"{t['mean']:.2f} ± {t['std']:.2f} |")
        lines.append("")
    if "recipes" in results:
        lines += ["### The recipe search", "", "| kind of arm | SGD | Adam | used | the better one |", "|---|---|---|---|---|"]
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        for r in recipe_search(results["recipes"], results["recipes"].get("scale", "course")):
            lines.append(f"| {r['kind']} | {fmt(r['sgd'])} | {fmt(r['adam'])} | {r['used']} | "
                         f"{ {True: 'yes', False: '**no**', None: '-'}[r['better']]} |")
        lines.append("")
    lines += ["### The effects", ""]
    for e in effects(results):
        verdict = {True: "**holds**", False: "**does not hold**", None: "not measured"}[e["holds"]]
        lines.append(f"- {e['claim']}: {verdict}. " + _numbers(e))
    return "\n".join(lines) + "\n"


def _value_text(key, v, long=False):
    """One number of an effect as text; `long` spells out a (mean, sd, n) triple and drops brackets."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return str(v)
    if isinstance(v, float):
        return f"{v:+.1%}" if key.startswith("relative") else f"{v:.2f}"
    if isinstance(v, tuple):
        return f"{v[0]:.2f} ± {v[1]:.2f}" + (f" (mean ± sd over {v[2]} seeds)" if long and len(v) == 3 else "")
    if isinstance(v, list):
        values = ", ".join(f"{x:.1f}" for x in v)
        return values if long else f"[{values}]"
    return str(v)


def _numbers(e):
    """The numbers of an effect on one line (the markdown report)."""
    if e["holds"] is None:
        return e["why"]
    parts = []
    for k, v in e.items():
        if k in ("claim", "holds"):
            continue
        if isinstance(v, dict):
            parts.append("; ".join(f"vs {a}: {r['relative']:+.1%} (beyond spread: {r['beyond_spread']})"
                                   for a, r in v.items()))
        else:
            parts.append(f"{k} {_value_text(k, v)}")
    return ", ".join(parts)


def effect_text(e):
    """One effect of dkp.course.report.effects as text: the claim, the verdict line (starting with '->')
    and the numbers it was computed from, one a line."""
    verdict = {True: "HOLDS", False: "does not hold", None: "not measured"}[e["holds"]]
    lines = [e["claim"], f"  -> {verdict}"]
    lines += [f"     {k}: {_value_text(k, v, long=True)}" for k, v in e.items() if k not in ("claim", "holds")]
    return "\n".join(lines)
