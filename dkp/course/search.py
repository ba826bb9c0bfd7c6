"""The co-matrix adaptation search (data/results/cma-search/PLAN.md): the metrics of each run and the
verdict on each hypothesis, computed from the JSON files its experiments write.

    python -m dkp report data/results/cma-search     # the search's tables and verdicts

The metrics (per run, from what `dkp.course.experiments.run_one` records with SEARCH_PROBES):

    M1  rise during the anneal: slice perplexity at the last anneal point minus at the first
    M2  cost against the control: slice perplexity at the first grid probe at or after the anneal's
        end, minus the `hold` arm's (S never annealed) at the same probe
    M3  final validation perplexity (whole split)
    M4  dependence on S: whole-validation perplexity with S off / with S on - 1, at the end
    M5  robustness to pruning S further: slice perplexity with S pruned to 10% of its entries /
        with S intact - 1, at the end
    M6  end-of-anneal perplexity: slice perplexity at the last anneal point

Two sets of values differ beyond the spread when their means differ by more than
2 sqrt(sd_a^2 + sd_b^2) (`dkp.course.report.compare`, the rule of the course's report). Runs that diverged
or did not train (final validation perplexity above twice the lowest arm mean of the family) are
counted apart and left out; a comparison with fewer than 3 seeds on a side decides nothing.
"""
from __future__ import annotations

import math

from dkp.course.report import compare, load_results, mean_sd, stat
from dkp.course.run_metrics import failed_runs, loss_jump, run_metrics  # noqa: F401 (part of this API)

FAMILIES = ("cma-timing", "cma-density", "cma-init", "cmr-schedule", "cmr-branch", "cma-long")
METRICS = {"M1": "rise during the anneal (slice ppl, last anneal point - first)",
           "M2": "cost against S never annealed (slice ppl at the anneal's end, minus hold's)",
           "M3": "final validation perplexity",
           "M4": "dependence on S (valid ppl with S off / with S - 1)",
           "M5": "robustness to pruning S to 10% of its entries (slice ppl ratio - 1)",
           "M6": "end-of-anneal perplexity (slice, before any recovery)"}
MIN_SEEDS = 3


def load(directory, quick=False):
    """{family: result} for every FAMILY.json (or FAMILY-quick.json) in `directory`."""
    return load_results(directory, quick, FAMILIES)


# --- per run ---------------------------------------------------------------------------------------


def arm_values(result, arm, hold=None):
    """{metric: [value per trained seed]} of `arm` (M2 against the `hold` arm's same seed)."""
    failed = {s for s, _ in failed_runs(result).get(arm, [])}
    holds = {r["seed"]: r for r in (hold or {}).get("runs", []) if not r.get("diverged")}
    entry = result["arms"][arm]
    values = {}
    for r in entry["runs"]:
        if r["seed"] in failed:
            continue
        for k, v in run_metrics(r, entry["config"], holds.get(r["seed"])).items():
            values.setdefault(k, []).append(v)
    return values


def stats(values):
    """(mean, sample sd, n) of a list, the shape `dkp.course.report.compare` takes; None when empty."""
    if not values:
        return None
    s = mean_sd(values)
    return s["mean"], s["std"], s["n"]


def differ(a, b):
    """`compare(a, b)` (b against a) when both have MIN_SEEDS values, else None (undecided)."""
    a, b = stats(a), stats(b)
    if a is None or b is None or a[2] < MIN_SEEDS or b[2] < MIN_SEEDS:
        return None
    return {**compare(a, b), "a": a, "b": b}


def untrained(results, family, arm):
    """A decided check for an arm that ran MIN_SEEDS seeds or more but trained in fewer (the rest
    diverged or did not train): such an arm cannot lower anything. None otherwise."""
    result = results.get(family)
    if not result or arm not in result["arms"]:
        return None
    runs, failed = result["arms"][arm].get("runs", []), failed_runs(result).get(arm, [])
    if len(runs) < MIN_SEEDS or len(runs) - len(failed) >= MIN_SEEDS:
        return None
    return {"untrained": f"trained in {len(runs) - len(failed)} of {len(runs)} seeds", "difference": 0.0,
            "beyond_spread": False}


def _hold(results):
    return (results.get("cma-timing") or {}).get("arms", {}).get("hold")


def values(results, family, arm):
    result = results.get(family)
    if not result or arm not in result["arms"]:
        return {}
    return arm_values(result, arm, _hold(results))


# --- the verdicts ------------------------------------------------------------------------------------
def _verdict(hid, claim, checks, holds_if="all"):
    """checks: [(label, comparison or None, wanted)] where wanted(c) says the comparison goes the
    predicted way beyond the spread. The hypothesis holds if every (or any) check does; it is
    undecided while a check lacks data."""
    rows, decided = [], True
    for label, c, wanted in checks:
        if c is None:
            rows.append({"check": label, "holds": None})
            decided = False
        else:
            rows.append({"check": label, "holds": bool(wanted(c)), **c})
    outcomes = [r["holds"] for r in rows if r["holds"] is not None]
    if holds_if == "all":
        holds = all(outcomes) if decided else (False if outcomes and not all(outcomes) else None)
    else:
        holds = any(outcomes) if outcomes and (decided or any(outcomes)) else None
    return {"id": hid, "claim": claim, "holds": holds, "checks": rows}


def rises(v):
    """M1 as two sets of points (start, end of the anneal): the comparison of end against start."""
    if "M1" not in v:
        return None
    return differ(v["start"], v["M6"])


def up(c):
    return c["difference"] > 0 and c["beyond_spread"]


def down(c):
    return c["difference"] < 0 and c["beyond_spread"]


def not_up(c):
    return not up(c)


def relative_loss(a, b):
    """(b / a - 1, its sd to first order) of two (mean, sd, n)."""
    (ma, sa, _), (mb, sb, _) = a, b
    r = mb / ma
    return r - 1.0, r * math.sqrt((sa / ma) ** 2 + (sb / mb) ** 2)


def hypotheses(results, course=None):
    """The verdict of every hypothesis of PLAN.md that its data allows; `course` is the course's
    kp-loss result (for H6a)."""
    v = lambda family, arm: values(results, family, arm)  # noqa: E731
    T = {a: v("cma-timing", a) for a in ("early-long", "early-short", "late-short", "late-short-norec", "hold")}
    out = []
    out.append(_verdict("H1a", "late-short: perplexity rises during the anneal (M1)",
                        [("late-short M1", rises(T["late-short"]), up)]))
    out.append(_verdict("H1b", "early-long: perplexity does not rise during the anneal (M1)",
                        [("early-long M1", rises(T["early-long"]), not_up)]))
    out.append(_verdict("H1c", "early-short: perplexity rises during the anneal (M1)",
                        [("early-short M1", rises(T["early-short"]), up)]))
    out.append(_verdict("H1d", "the anneal costs perplexity against S never annealed, at the anneal's end (M2)",
                        [(f"{a} M2 > 0", _positive(T[a].get("M2")), up) for a in ("late-short", "late-short-norec")]))
    out.append(_verdict("H1e", "0.25 epoch of recovery wins back what a late anneal cost (M3)",
                        [("late-short M3 below late-short-norec's", differ(T["late-short-norec"].get("M3"),
                                                                         T["late-short"].get("M3")), down),
                         ("late-short M3 not above early-long's", differ(T["early-long"].get("M3"),
                                                                        T["late-short"].get("M3")), not_up)]))
    D = {a: v("cma-density", a) for a in ("late-short", "late-short-d0.0001")}
    out.append(_verdict("H2a", "the rise grows as S's final density falls (M1 at 0.01% above M1 at 1%)",
                        [("M1 0.01% vs 1%", differ(D["late-short"].get("M1"), D["late-short-d0.0001"].get("M1")), up)]))
    out.append(_verdict("H2b", "the final perplexity grows as S's final density falls (M3 at 0.01% above 1%)",
                        [("M3 0.01% vs 1%", differ(D["late-short"].get("M3"), D["late-short-d0.0001"].get("M3")), up)]))
    I = {a: v("cma-init", a) for a in ("early-long", "late-short", "residual-early-long", "residual-late-short")}
    out.append(_verdict("H3a", "S started as a dense model's residual rises more during a late anneal (M1)",
                        [("residual-late-short M1 vs late-short", differ(I["late-short"].get("M1"),
                                                                        I["residual-late-short"].get("M1")), up)]))
    out.append(_verdict("H3b", "S started as a dense model's residual leaves more dependence on S (M4)",
                        [(f"residual-{w} M4 vs {w}", differ(I[w].get("M4"), I[f"residual-{w}"].get("M4")), up)
                         for w in ("early-long", "late-short")]))
    out.append(_verdict("H3c", "S started as a dense model's residual: final perplexity (reported, no direction)",
                        [(f"residual-{w} M3 vs {w}", differ(I[w].get("M3"), I[f"residual-{w}"].get("M3")),
                          lambda c: c["beyond_spread"]) for w in ("early-long", "late-short")], holds_if="any"))
    sched = results.get("cmr-schedule", {}).get("arms", {})
    base = v("cmr-schedule", "late-short")
    cmr_arms = [a for a in sched if a != "late-short"]
    for hid, metric, what in (("H4a", "M1", "the rise during the anneal"), ("H4b", "M6", "the end-of-anneal perplexity"),
                              ("H4c", "M3", "the final perplexity"), ("H4d", "M4", "the dependence on S"),
                              ("H4d", "M5", "the cost of pruning S further")):
        out.append(_verdict(f"{hid}:{metric}", f"co-matrix dropout lowers {what} ({metric}) of a late-short anneal",
                            [(f"{a} vs late-short", differ(base.get(metric), v("cmr-schedule", a).get(metric))
                              or untrained(results, "cmr-schedule", a), down)
                             for a in cmr_arms], holds_if="any"))
    out.append(fixes(results, "cmr-schedule", "late-short", "H4"))
    out.extend(branch(results))
    out.extend(long_scale(results, course))
    return out


def _positive(values_):
    """M2 is already a difference against the control: compare it with zero spread."""
    if not values_ or len(values_) < MIN_SEEDS:
        return None
    m, s, n = stats(values_)
    return {"relative": float("nan"), "difference": m, "threshold": 2 * s, "beyond_spread": abs(m) > 2 * s,
            "a": (0.0, 0.0, n), "b": (m, s, n)}


def fixes(results, family, baseline, hid):
    """'CMR fixes co-matrix adaptation': some CMR arm (co-matrix dropout on: cmr_p > 0) lowers M1 or
    M6 beyond the spread, and its M3 is not above the baseline's beyond the spread."""
    arms_ = [a for a, e in results.get(family, {}).get("arms", {}).items()
             if a != baseline and e["config"].get("cmr_p", 0) > 0]
    base = values(results, family, baseline)
    checks = []
    for a in arms_:
        mine = values(results, family, a)
        c1, c6, c3 = (differ(base.get(m), mine.get(m)) for m in ("M1", "M6", "M3"))
        failed = untrained(results, family, a)
        if failed:
            checks.append((a, {"beyond_spread": False, "detail": failed["untrained"]}, lambda c: False))
            continue
        if None in (c1, c6, c3):
            checks.append((a, None, None))
            continue
        ok = (down(c1) or down(c6)) and not_up(c3)
        detail = ", ".join(f"{m} {c['difference']:+.3g} (threshold {c['threshold']:.3g})"
                           for m, c in (("M1", c1), ("M6", c6), ("M3", c3)))
        checks.append((a, {"beyond_spread": ok, "M1": c1, "M6": c6, "M3": c3, "detail": detail},
                       lambda c: c["beyond_spread"]))
    return _verdict(hid, f"co-matrix dropout fixes co-matrix adaptation ({family}): lowers M1 or M6 beyond the "
                         f"spread without raising M3", checks, holds_if="any")


def branch(results):
    fam = results.get("cmr-branch")
    if not fam:
        return [_verdict(h, c, [(c, None, None)]) for h, c in (
            ("H5a", "whole-branch CMR, rescaled, fails to train in at least 1 of 3 seeds"),
            ("H5b", "not rescaled, or only below 10% density, it trains in 3 of 3 seeds"),
            ("H5c", "the failed runs' training loss jumps in the first 0.3 epoch, S above 50% density"))]
    failed = failed_runs(fam)
    n = {a: len(e["runs"]) for a, e in fam["arms"].items()}
    branch_arms = {a: e["config"] for a, e in fam["arms"].items() if e["config"]["cmr_variant"] == "branch"
                   and e["config"]["cmr_p"] > 0}
    rescaled = next((a for a, c in branch_arms.items() if c["cmr_rescale"] and c["cmr_schedule"] == "constant"), None)
    others = [a for a in branch_arms if a != rescaled]

    def count(arm):
        return {"failed": len(failed.get(arm, [])), "runs": n.get(arm, 0), "beyond_spread": None}

    out = []
    c = count(rescaled)
    out.append({"id": "H5a", "claim": f"{rescaled} (whole-branch CMR, rescaled) fails to train in at least 1 of 3 seeds",
                "holds": (c["failed"] >= 1) if c["runs"] >= MIN_SEEDS else None,
                "checks": [{"check": rescaled, **c, "holds": c["failed"] >= 1, "why": failed.get(rescaled, [])}]})
    rows = [{"check": a, **count(a), "holds": count(a)["failed"] == 0, "why": failed.get(a, [])} for a in others]
    out.append({"id": "H5b", "claim": "whole-branch CMR not rescaled, or only below 10% density, trains in 3 of 3 seeds",
                "holds": all(r["holds"] for r in rows) if rows and all(r["runs"] >= MIN_SEEDS for r in rows) else None,
                "checks": rows})
    jumps = [loss_jump(r) for r in fam["arms"].get(rescaled, {}).get("runs", [])
             if r["seed"] in {s for s, _ in failed.get(rescaled, [])}]
    out.append({"id": "H5c", "claim": "in the failed runs the training loss jumps within the first 0.3 epoch, "
                                     "while S is above 50% density",
                "holds": (all(j is not None and j["epoch"] <= 0.3 and j["density"] > 0.5 for j in jumps)
                          if jumps else None),
                "checks": [{"check": "largest rise of the training loss between two traced windows", "holds": None,
                            "jumps": jumps}]})
    return out


def long_scale(results, course):
    L = {a: values(results, "cma-long", a) for a in ("dense", "kp", "late-short", "late-short-output-p0.3")}
    out = []
    dense, kp = stats(L["dense"].get("M3")), stats(L["kp"].get("M3"))
    c_dense = c_kp = None
    if course:
        c_dense, c_kp = stat(course, "dense"), stat(course, "kp")
    check = None
    if dense and kp and c_dense and c_kp and min(dense[2], kp[2]) >= MIN_SEEDS:
        r_long, s_long = relative_loss(dense, kp)
        r_course, s_course = relative_loss(c_dense, c_kp)
        d, t = r_long - r_course, 2 * math.sqrt(s_long ** 2 + s_course ** 2)
        check = {"difference": d, "threshold": t, "beyond_spread": abs(d) > t, "relative": r_long,
                 "long": (r_long, s_long), "course": (r_course, s_course)}
    out.append(_verdict("H6a", "on the whole training split for 3 epochs, plain KP loses more against dense than "
                               "at the course scale", [("KP relative loss, long vs course", check, up)]))
    out.append(_verdict("H6b", "long scale, late-short: perplexity rises during the anneal (M1)",
                        [("late-short M1", rises(L["late-short"]), up)]))
    out.append(fixes(results, "cma-long", "late-short", "H6c") if results.get("cma-long") else
               _verdict("H6c", "long scale: co-matrix dropout fixes co-matrix adaptation", [("cma-long", None, None)]))
    return out


# --- text ----------------------------------------------------------------------------------------------
def _fmt(s, digits=1, scale=1.0, unit=""):
    if s is None:
        return "-"
    m, sd, n = s
    return (f"{m * scale:.{digits}f}{unit} ± {sd * scale:.{digits}f}{unit}"
            + ("" if n >= MIN_SEEDS else f" (n={n})"))


def table(results, family):
    """A markdown table of every arm of `family`: seeds trained, failed, and M1-M6 (mean ± sd)."""
    result = results[family]
    failed = failed_runs(result)
    lines = ["| arm | trained / runs | M3 final valid ppl | M6 end of anneal | M1 rise | M2 vs hold | "
             "M4 S off | M5 S pruned to 10% |", "|---|---|---|---|---|---|---|---|"]
    for arm, entry in result["arms"].items():
        v = values(results, family, arm)
        pct = lambda k: _fmt(stats(v[k]), 1, scale=100, unit="%") if v.get(k) else "-"  # noqa: E731
        lines.append(f"| {arm} | {len(entry['runs']) - len(failed.get(arm, []))} / {len(entry['runs'])} | "
                     f"{_fmt(stats(v.get('M3')), 2)} | {_fmt(stats(v.get('M6')))} | {_fmt(stats(v.get('M1')))} | "
                     f"{_fmt(stats(v.get('M2')))} | {pct('M4')} | {pct('M5')} |")
    return "\n".join(lines)


def verdict_text(h):
    word = {True: "holds", False: "does not hold", None: "undecided (not all runs are in)"}[h["holds"]]
    parts = []
    for c in h["checks"]:
        if "untrained" in c:
            parts.append(f"{c['check']}: {c['untrained']} -> no")
        elif "detail" in c:
            parts.append(f"{c['check']}: {c['detail']} -> {'yes' if c['holds'] else 'no'}")
        elif "difference" in c and c.get("threshold") is not None:
            parts.append(f"{c['check']}: difference {c['difference']:+.3g} (threshold {c['threshold']:.3g})"
                         f"{'' if c['holds'] is None else ' -> ' + ('yes' if c['holds'] else 'no')}")
        elif "failed" in c:
            parts.append(f"{c['check']}: {c['failed']} of {c['runs']} failed")
        elif "jumps" in c:
            parts.append("; ".join(f"step {j['step']} (epoch {j['epoch']:.2f}, density {j['density']:.3g}): "
                                   f"+{j['rise']:.2f} nats" for j in c["jumps"] if j) or "no failed run")
        else:
            parts.append(f"{c['check']}: no data yet")
    return f"- **{h['id']}** {h['claim']}: **{word}**. " + "; ".join(parts)


def family_sections(results, families, table_of):
    """Markdown lines: for each family present, its heading, command, commit, wall time and table."""
    lines = []
    for family in families:
        if family in results:
            r = results[family]
            wall = (f"{r['wall_seconds'] / 60:.0f} min wall" if "wall_seconds" in r
                    else "no wall time yet: still running, or interrupted")
            lines += [f"### {family}", "", f"`{r.get('command')}` (commit {str(r.get('commit'))[:10]}, {wall})", "",
                      table_of(results, family), ""]
    return lines


def markdown(results, course=None):
    lines = family_sections(results, FAMILIES, table)
    lines += ["### The verdicts", ""] + [verdict_text(h) for h in hypotheses(results, course)]
    return "\n".join(lines) + "\n"
