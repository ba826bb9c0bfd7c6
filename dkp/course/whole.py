"""The whole model (data/results/whole-model/PLAN.md): per-arm tables and the verdict on each
hypothesis, computed from the JSON files the `groupreduce` and `whole-model` experiments write.

    python -m dkp report data/results/whole-model     # the tables and verdicts

What each run records and this module reads: `final_valid_ppl`, `test_ppl`; `model` (every part's
parameters and bytes, and the whole model's compression against the same model dense); `switch`
(validation perplexity just before and just after a student is compressed from the dense model);
`quantized` (the same model stored in 8 bits: its bytes and perplexities).

Two arms differ when their means differ by more than 2 sqrt(sd_a^2 + sd_b^2) over at least 3 seeds
each (`dkp.course.report.compare`), the rule of the plan, fixed before the runs.
"""
from __future__ import annotations

from dkp.course.report import load_results
from dkp.course.search import MIN_SEEDS, _fmt, _verdict, differ, family_sections, stats, verdict_text

FAMILIES = ("groupreduce", "whole-model")
VOCAB_PARTS = ("embed", "dec")


def load(directory, quick=False):
    """{family: result} for every FAMILY.json (or FAMILY-quick.json) in `directory`."""
    return load_results(directory, quick, FAMILIES)


def _parts(run):
    return {p["part"]: p for p in run["model"]["parts"]}


def run_values(run):
    """The numbers of one run the tables and verdicts use."""
    parts = _parts(run)
    vocab = [parts[k] for k in VOCAB_PARTS]
    dense_bytes = 4 * sum(p["dense_params"] for p in parts.values())     # the float32 dense model
    out = {"valid": run["final_valid_ppl"], "test": run["test_ppl"],
           "compression": run["model"]["compression"], "n_params": run["model"]["n_params"],
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


def arm_values(result, arm):
    """{key: [value per seed]} of `arm`, runs that diverged left out."""
    values = {}
    for run in result["arms"][arm]["runs"]:
        if run.get("diverged"):
            continue
        for k, v in run_values(run).items():
            values.setdefault(k, []).append(v)
    return values


def _values(results, family, arm):
    result = results.get(family)
    if not result or arm not in result["arms"]:
        return {}
    return arm_values(result, arm)


def table(results, family):
    """A markdown table of every arm of `family` (mean ± sd over its seeds)."""
    lines = ["| arm | seeds | embedding + softmax x | whole model x (params) | MB (float32) | "
             "valid ppl right after the switch | final valid ppl | test ppl | int8: ppl cost | int8: x (bytes) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for arm in results[family]["arms"]:
        v = _values(results, family, arm)
        if not v:
            lines.append(f"| {arm} | 0 | - | - | - | - | - | - | - | - |")
            continue
        s = lambda k, d=2, scale=1.0, unit="": _fmt(stats(v.get(k)), d, scale, unit) if v.get(k) else "-"  # noqa: E731
        lines.append(f"| {arm} | {len(v['valid'])} | {s('vocab_compression')} | {s('compression')} | "
                     f"{s('n_bytes', 2, 1e-6)} | {s('switch_after', 1)} | {s('valid')} | {s('test')} | "
                     f"{s('int8_cost', 2, 100, '%')} | {s('int8_compression', 1)} |")
    return "\n".join(lines)


def lower(c):
    return c["difference"] < 0 and c["beyond_spread"]


def hypotheses(results):
    """The plan's G1-G3, W1-W3 and Q1, each {id, claim, holds (True, False or None: undecided), checks}."""
    g = lambda arm, key="valid": _values(results, "groupreduce", arm).get(key, [])   # noqa: E731
    w = lambda arm, key="valid": _values(results, "whole-model", arm).get(key, [])   # noqa: E731
    out = [
        _verdict("G1", "at 6x on the embedding and softmax, GroupReduce ends lower than one truncated SVD",
                 [("groupreduce-6x vs svd-6x", differ(g("svd-6x"), g("groupreduce-6x")), lower)]),
        _verdict("G2", "at 6x, GroupReduce ends lower than magnitude pruning",
                 [("groupreduce-6x vs prune-6x", differ(g("prune-6x"), g("groupreduce-6x")), lower)]),
        _verdict("G3", "right after the switch (no retraining), GroupReduce keeps a lower perplexity than SVD",
                 [("groupreduce-6x vs svd-6x, just after the switch",
                   differ(g("svd-6x", "switch_after"), g("groupreduce-6x", "switch_after")), lower)]),
    ]
    whole = "groupreduce-12x-doped-kp"
    comp = w(whole, "compression")
    w1 = [("whole-model compression >= 10x in every seed",
           {"detail": f"{min(comp):.2f}x at least over {len(comp)} seeds", "difference": min(comp) - 10.0,
            "beyond_spread": True} if len(comp) >= MIN_SEEDS else None,
           lambda c: c["difference"] >= 0)]
    w1 = _verdict("W1", f"{whole} compresses the whole model at least 10x", w1)
    w1["notes"] = []
    c = differ(w("dense"), w(whole))                           # stated with the spread, not tested
    if c is not None:
        w1["notes"].append(f"perplexity against dense (the teacher): {c['relative']:+.1%} (difference "
                           f"{c['difference']:+.2f}, 2-sd threshold {c['threshold']:.2f})")
    out.append(w1)
    w2 = _verdict("W2", "with the teacher and distillation, doped KP ends lower than from scratch at the same steps",
                  [("doped-kp-teacher-ilkd vs doped-kp", differ(w("doped-kp"), w("doped-kp-teacher-ilkd")), lower)])
    w2["notes"] = []
    c = differ(w("doped-kp-teacher"), w("doped-kp-teacher-ilkd"))   # not a planned hypothesis: stated, same rule
    if c is not None:
        w2["notes"].append(f"what distillation adds to the teacher's start (doped-kp-teacher-ilkd vs doped-kp-teacher, "
                           f"not a planned hypothesis): difference {c['difference']:+.2f} (2-sd threshold "
                           f"{c['threshold']:.2f})")
    out.append(w2)
    out.append(_verdict("W2b", "(what the teacher's start alone gives) doped-kp-teacher ends lower than doped-kp",
                        [("doped-kp-teacher vs doped-kp", differ(w("doped-kp"), w("doped-kp-teacher")), lower)]))
    out.append(_verdict("W3", "distillation helps the whole compressed model",
                        [(f"{whole}-ilkd vs {whole}", differ(w(whole), w(f"{whole}-ilkd")), lower)]))
    costs = [(fam, arm, c) for fam in FAMILIES if fam in results for arm in results[fam]["arms"]
             for c in _values(results, fam, arm).get("int8_cost", [])]
    worst = max(costs, key=lambda t: t[2]) if costs else None
    complete = all(len(results.get(f, {}).get("arms", {}).get(a, {}).get("runs", [])) >= MIN_SEEDS
                   for f in FAMILIES for a in results.get(f, {}).get("arms", {})) and len(results) == len(FAMILIES)
    q1 = ({"detail": f"the largest of {len(costs)} runs' costs is {worst[2]:+.2%} ({worst[0]}/{worst[1]})",
           "difference": worst[2], "beyond_spread": True} if worst and complete else None)
    out.append(_verdict("Q1", "8-bit storage costs less than 1% perplexity in every run",
                        [("every run's int8 validation perplexity / float's - 1 < 1%", q1,
                          lambda c: c["difference"] < 0.01)]))
    return out


def markdown(results):
    lines = family_sections(results, FAMILIES, table)
    lines += ["### The verdicts", ""] + [verdict_text(h) + "".join(f"; {n}" for n in h.get("notes", []))
                                         for h in hypotheses(results)]
    return "\n".join(lines) + "\n"
