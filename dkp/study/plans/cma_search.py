"""The co-matrix adaptation search (data/results/cma-search/PLAN.md), declared: H1-H6 on the plan's
seeds 0-2, and the replication its addendum fixed before those runs, R1a-R6d, on seeds 0-8 (course
scale) and 0-5 (long scale). The metrics M1-M6 are `dkp.study.metrics`'; M1 is decided as the
slice perplexity at the anneal's last point against its first, over the same seeds.

`headline(verdicts)` gives the sentences the addendum says the course states for each outcome.
"""
from __future__ import annotations

from dkp.study import catalog
from dkp.study.engine import (All, Any, Compare, Failures, Hypothesis, LossJump, Ref, RelativeGap,
                              WORDS)
from dkp.study.report import Column, Study

T, D, I, S, B, L = "cma-timing", "cma-density", "cma-init", "cmr-schedule", "cmr-branch", "cma-long"
RC, RL = "cmr-replication", "cma-long-replication"
P = catalog.SCALES["course"]["cmr_p"]
DROP = f"output-p{P:g}"                       # the dropout arm the replication repeats
LONG_DROP = f"late-short-output-p{P:g}"


def rises(family, arm, want="higher", label=None):
    """M1 decided: the slice perplexity at the anneal's last point (M6) against its first (start)."""
    return Compare(Ref(family, arm, "M6"), Ref(family, arm, "start"), want, label=label or f"{arm} M1")


def vs(family, arm, base, metric, want, label=None):
    return Compare(Ref(family, arm, metric), Ref(family, base, metric), want, label=label or f"{arm} vs {base}")


def fix(family, arm, base):
    """'Dropout fixes co-matrix adaptation' for one arm: M1 or M6 lower, M3 not higher."""
    return All((Any((vs(family, arm, base, "M1", "lower", "M1"), vs(family, arm, base, "M6", "lower", "M6"))),
                vs(family, arm, base, "M3", "not higher", "M3")), label=arm)


def dropout_arms(family, base):
    return [a for a, c in catalog.search_arms(family).items() if a != base and c.cmr_p > 0]


def hypotheses():
    h = [
        Hypothesis("H1a", "late-short: perplexity rises during the anneal (M1)", rises(T, "late-short")),
        Hypothesis("H1b", "early-long: perplexity does not rise during the anneal (M1)",
                   rises(T, "early-long", "not higher")),
        Hypothesis("H1c", "early-short: perplexity rises during the anneal (M1)", rises(T, "early-short")),
        Hypothesis("H1d", "the anneal costs perplexity against S never annealed, at the anneal's end (M2)",
                   All(tuple(Compare(Ref(T, a, "M2"), 0.0, "higher", label=f"{a} M2 > 0")
                             for a in ("late-short", "late-short-norec")))),
        Hypothesis("H1e", "0.25 epoch of recovery wins back what a late anneal cost (M3)",
                   All((vs(T, "late-short", "late-short-norec", "M3", "lower", "late-short M3 below late-short-norec's"),
                        vs(T, "late-short", "early-long", "M3", "not higher", "late-short M3 not above early-long's")))),
        Hypothesis("H2a", "the rise grows as S's final density falls (M1 at 0.01% above M1 at 1%)",
                   vs(D, "late-short-d0.0001", "late-short", "M1", "higher", "M1 0.01% vs 1%")),
        Hypothesis("H2b", "the final perplexity grows as S's final density falls (M3 at 0.01% above 1%)",
                   vs(D, "late-short-d0.0001", "late-short", "M3", "higher", "M3 0.01% vs 1%")),
        Hypothesis("H3a", "S started as a dense model's residual rises more during a late anneal (M1)",
                   vs(I, "residual-late-short", "late-short", "M1", "higher")),
        Hypothesis("H3b", "S started as a dense model's residual leaves more dependence on S (M4)",
                   All(tuple(vs(I, f"residual-{w}", w, "M4", "higher", f"residual-{w} M4 vs {w}")
                             for w in ("early-long", "late-short")))),
        Hypothesis("H3c", "S started as a dense model's residual: final perplexity (reported, no direction)",
                   Any(tuple(vs(I, f"residual-{w}", w, "M3", "beyond", f"residual-{w} M3 vs {w}")
                             for w in ("early-long", "late-short")))),
    ]
    cmr = [a for a in catalog.search_arms(S) if a != "late-short"]
    for hid, metric, what in (("H4a", "M1", "the rise during the anneal"), ("H4b", "M6", "the end-of-anneal perplexity"),
                              ("H4c", "M3", "the final perplexity"), ("H4d", "M4", "the dependence on S"),
                              ("H4d", "M5", "the cost of pruning S further")):
        h.append(Hypothesis(f"{hid}:{metric}", f"co-matrix dropout lowers {what} ({metric}) of a late-short anneal",
                            Any(tuple(vs(S, a, "late-short", metric, "lower") for a in cmr))))
    h.append(Hypothesis("H4", f"co-matrix dropout fixes co-matrix adaptation ({S}): lowers M1 or M6 beyond the "
                              f"spread without raising M3",
                        Any(tuple(fix(S, a, "late-short") for a in dropout_arms(S, "late-short")))))
    branch = {a: c for a, c in catalog.search_arms(B).items() if c.cmr_variant == "branch" and c.cmr_p > 0}
    rescaled = next(a for a, c in branch.items() if c.cmr_rescale and c.cmr_schedule == "constant")
    h += [
        Hypothesis("H5a", f"{rescaled} (whole-branch CMR, rescaled) fails to train in at least 1 of 3 seeds",
                   Failures(Ref(B, rescaled), "some", label=rescaled)),
        Hypothesis("H5b", "whole-branch CMR not rescaled, or only below 10% density, trains in 3 of 3 seeds",
                   All(tuple(Failures(Ref(B, a), "none", label=a) for a in branch if a != rescaled))),
        Hypothesis("H5c", "in the failed runs the training loss jumps within the first 0.3 epoch, while S is above "
                          "50% density", LossJump(Ref(B, rescaled), 0.3, 0.5,
                                                  label="largest rise of the training loss between two traced windows")),
        Hypothesis("H6a", "on the whole training split for 3 epochs, plain KP loses more against dense than at the "
                          "course scale",
                   RelativeGap((Ref(L, "dense"), Ref(L, "kp")), (Ref("kp-loss", "dense", "valid"), Ref("kp-loss", "kp", "valid")),
                               "higher", label="KP relative loss, long vs course")),
        Hypothesis("H6b", "long scale, late-short: perplexity rises during the anneal (M1)", rises(L, "late-short")),
        Hypothesis("H6c", f"co-matrix dropout fixes co-matrix adaptation ({L}): lowers M1 or M6 beyond the spread "
                          f"without raising M3", Any(tuple(fix(L, a, "late-short") for a in dropout_arms(L, "late-short")))),
    ]
    return h + replication()


def replication():
    """The addendum's hypotheses: the same comparisons on every seed of the replication's families."""
    return [
        Hypothesis("R1a", "course scale, 9 seeds: perplexity rises during a late-short anneal (M1)",
                   rises(RC, "late-short"), replicates="H1a"),
        Hypothesis("R4a", f"course scale, 9 seeds: {DROP} lowers the rise during the anneal (M1)",
                   vs(RC, DROP, "late-short", "M1", "lower"), replicates="H4a:M1"),
        Hypothesis("R4b", f"course scale, 9 seeds: {DROP} lowers the end-of-anneal perplexity (M6)",
                   vs(RC, DROP, "late-short", "M6", "lower"), replicates="H4b:M6"),
        Hypothesis("R4c", f"course scale, 9 seeds: {DROP} raises the final perplexity (M3)",
                   vs(RC, DROP, "late-short", "M3", "higher")),
        Hypothesis("R4d", f"course scale, 9 seeds: {DROP} lowers the dependence on S (M4)",
                   vs(RC, DROP, "late-short", "M4", "lower"), replicates="H4d:M4"),
        Hypothesis("R4", "course scale, 9 seeds: co-matrix dropout fixes co-matrix adaptation (M1 or M6 lower "
                         "beyond the spread, M3 not higher)", fix(RC, DROP, "late-short"), replicates="H4"),
        Hypothesis("R6b", "long scale, 6 seeds: perplexity rises during a late-short anneal (M1)",
                   rises(RL, "late-short"), replicates="H6b"),
        Hypothesis("R6c", "long scale, 6 seeds: co-matrix dropout fixes co-matrix adaptation (M1 or M6 lower "
                          "beyond the spread, M3 not higher)", fix(RL, LONG_DROP, "late-short"), replicates="H6c"),
        Hypothesis("R6d", f"long scale, 6 seeds: {LONG_DROP} lowers the dependence on S (M4)",
                   vs(RL, LONG_DROP, "late-short", "M4", "lower")),
    ]


def headline(verdicts):
    """The sentences the addendum fixed for each outcome of the replication, from its verdicts
    ({id: Verdict} or [Verdict]); None for a sentence whose verdicts are not all decided yet."""
    v = verdicts if isinstance(verdicts, dict) else {x.id: x for x in verdicts}
    held = {k: v[k].holds for k in ("R1a", "R6b", "R4", "R6c", "R4c", "R4d", "R6d")}
    out = {}
    rise = (held["R1a"], held["R6b"])
    out["rise"] = (None if None in rise else
                   "perplexity rises while S is sparsified late in training, at both scales" if all(rise) else
                   f"perplexity rises while S is sparsified late in training at the "
                   f"{'course' if rise[0] else 'long'} scale, not at the {'long' if rise[0] else 'course'} scale"
                   if any(rise) else "the rise while S is sparsified late in training did not replicate")
    fixed = (held["R4"], held["R6c"])
    if None in fixed or held["R4c"] is None:
        out["fix"] = None
    elif all(fixed):
        out["fix"] = ("co-matrix dropout fixes co-matrix adaptation: it lowers the rise (or the perplexity at the "
                      "anneal's end) without raising the final perplexity, at both scales")
    elif any(fixed):
        out["fix"] = (f"co-matrix dropout fixes co-matrix adaptation at the {'course' if fixed[0] else 'long'} scale, "
                      f"not at the {'long' if fixed[0] else 'course'} scale")
    else:
        out["fix"] = "co-matrix dropout does not fix co-matrix adaptation in dkp's runs" + (
            ", and it raises the final perplexity" if held["R4c"] else "")
    cuts = (held["R4d"], held["R6d"])
    out["dependence"] = (None if None in cuts else
                         "co-matrix dropout cuts the model's dependence on S" + ("" if all(cuts) else
                         f" (at the {'course' if cuts[0] else 'long'} scale)") if any(cuts) else "")
    return out


STUDY = Study(
    name="cma-search", families=(T, D, I, S, B, L, RC, RL),
    columns=(Column("M3 final valid ppl", "M3", 2), Column("M6 end of anneal", "M6", 1), Column("M1 rise", "M1", 1),
             Column("M2 vs hold", "M2", 1), Column("M4 S off", "M4", 1, 100, "%"),
             Column("M5 S pruned to 10%", "M5", 1, 100, "%")),
    hypotheses=hypotheses, control=(T, "hold"), borrowed={"kp-loss": ".."})

__all__ = ["STUDY", "hypotheses", "replication", "headline", "WORDS"]
