"""The one hypotheses engine: a hypothesis is data, `evaluate` decides every one under the project's
rule, and `verdict_line` prints it, for the README, `python -m dkp report` and the notebooks alike.

The rule. Two arms differ *beyond the spread* when their means differ by more than
2 sqrt(sd_a^2 + sd_b^2), the sample standard deviations of their trained seeds, and each arm has
trained in every seed its plan runs (at least MIN_SEEDS). An arm that trained in fewer makes every
comparison it is in *undecided (trained k of n)*: never a silent no.

A hypothesis is `Hypothesis(id, claim, test)`, `test` a tree of checks:

    Compare(b, a, want)     arm b's metric against arm a's (or against a number): want "lower",
                            "higher", "not higher", "not lower", "beyond" (either way) or
                            "within" (b / a - 1 <= bound, no spread involved)
    EveryRun(refs, op, bound)   every trained run of the arms meets value `op` bound
    Failures(ref, want)     the runs of an arm that diverged or did not train: "some" or "none"
    LossJump(ref, ...)      in the failed runs, the training loss jumped early, S still dense
    RelativeGap(b, a)       one pair's relative loss (b_kp / b_dense - 1) against another's,
                            its sd propagated to first order
    Only(condition, test)   `test`'s answer where `condition` holds; undecided (saying so) where it
                            does not: a comparison the plan decides only under a condition
    All(...), Any(...)      every child holds / some child holds (three-valued: undecided where
                            the answer waits on an undecided child)

`preregistered=False` marks a comparison added after the runs; the printer says so wherever it
appears. `replicates="H4"` ties a replication's hypothesis to the plan's, printed side by side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from dkp.study.metrics import loss_jump
from dkp.study.records import MIN_SEEDS, stats


@dataclass(frozen=True)
class Ref:
    """A set of per-seed values: `metric` of `arm` in experiment `family` ("*" as arm: every arm)."""
    family: str
    arm: str
    metric: str = "M3"


@dataclass(frozen=True)
class Compare:
    b: Ref
    a: Ref | float = 0.0
    want: str = "lower"
    bound: float | None = None
    label: str = ""


@dataclass(frozen=True)
class EveryRun:
    refs: tuple
    op: str
    bound: float
    label: str = ""


@dataclass(frozen=True)
class Failures:
    ref: Ref
    want: str            # "some": at least one run failed; "none": every run trained
    label: str = ""


@dataclass(frozen=True)
class LossJump:
    ref: Ref
    max_epoch: float = 0.3
    min_density: float = 0.5
    label: str = ""


@dataclass(frozen=True)
class RelativeGap:
    b: tuple             # (dense Ref, compressed Ref) whose relative loss is compared ...
    a: tuple             # ... against this pair's
    want: str = "higher"
    label: str = ""


@dataclass(frozen=True)
class All:
    children: tuple
    label: str = ""


@dataclass(frozen=True)
class Any:
    children: tuple
    label: str = ""


@dataclass(frozen=True)
class Only:
    condition: object
    test: object
    label: str = ""


@dataclass(frozen=True)
class Hypothesis:
    id: str
    claim: str
    test: object
    preregistered: bool = True
    replicates: str | None = None
    reported: tuple = field(default=())   # checks printed beside the verdict, deciding nothing

    def refs(self):
        """Every (family, arm, metric) the hypothesis reads: its arms and metrics, as data."""
        return list(_refs(self.test))


def _refs(check):
    if isinstance(check, (All, Any)):
        for c in check.children:
            yield from _refs(c)
    elif isinstance(check, Only):
        yield from _refs(check.condition)
        yield from _refs(check.test)
    elif isinstance(check, Compare):
        yield check.b
        if isinstance(check.a, Ref):
            yield check.a
    elif isinstance(check, EveryRun):
        yield from check.refs
    elif isinstance(check, (Failures, LossJump)):
        yield check.ref
    elif isinstance(check, RelativeGap):
        yield from (*check.b, *check.a)


@dataclass
class Outcome:
    """What one check (or group) decided: holds True / False / None (undecided), the numbers as
    text, why it is undecided, and the numbers themselves for code that reads them."""
    label: str
    holds: bool | None
    text: str = ""
    why: str = ""
    numbers: dict = field(default_factory=dict)
    children: list = field(default_factory=list)


@dataclass
class Verdict:
    hypothesis: Hypothesis
    outcome: Outcome
    reported: list = field(default_factory=list)

    @property
    def id(self):
        return self.hypothesis.id

    @property
    def holds(self):
        return self.outcome.holds


# --- the rule ----------------------------------------------------------------------------------------
def compare(a, b):
    """b's mean against a's, both (mean, sd, n): the difference, b / a - 1, the 2-sd threshold and
    whether the difference is beyond it."""
    (ma, sa, _), (mb, sb, _) = a, b
    t = 2 * math.sqrt(sa ** 2 + sb ** 2)
    return {"difference": mb - ma, "relative": mb / ma - 1.0 if ma else float("nan"), "threshold": t,
            "beyond_spread": abs(mb - ma) > t, "a": a, "b": b}


def differ(a, b):
    """`compare` of two lists of per-seed values (b against a) when each has at least MIN_SEEDS
    values, else None (undecided)."""
    sa, sb = stats(a), stats(b)
    if sa is None or sb is None or min(sa[2], sb[2]) < MIN_SEEDS:
        return None
    return compare(sa, sb)


WANTS = {
    "lower": lambda c: c["difference"] < 0 and c["beyond_spread"],
    "higher": lambda c: c["difference"] > 0 and c["beyond_spread"],
    "not higher": lambda c: not (c["difference"] > 0 and c["beyond_spread"]),
    "not lower": lambda c: not (c["difference"] < 0 and c["beyond_spread"]),
    "beyond": lambda c: c["beyond_spread"],
}


def _fmt(x):
    return f"{x:.3g}"


# --- evaluation ----------------------------------------------------------------------------------------
def evaluate(hypotheses, records):
    """[Verdict] of every hypothesis against `records` (a `dkp.study.records.Records`)."""
    return [Verdict(h, _check(h.test, records), [_check(c, records) for c in h.reported]) for h in hypotheses]


def _check(check, rec):
    kind = type(check).__name__
    return globals()[f"_eval_{kind}"](check, rec)


def _eval_All(check, rec):
    kids = [_check(c, rec) for c in check.children]
    holds = (False if any(k.holds is False for k in kids) else
             None if any(k.holds is None for k in kids) else True)
    return Outcome(check.label, holds, children=kids)


def _eval_Any(check, rec):
    kids = [_check(c, rec) for c in check.children]
    holds = (True if any(k.holds for k in kids) else
             None if any(k.holds is None for k in kids) else False)
    return Outcome(check.label, holds, children=kids)


def _eval_Only(check, rec):
    cond, test = _check(check.condition, rec), _check(check.test, rec)
    if cond.holds is False:
        why = f"decided only if {cond.label or 'its condition holds'}, and it does not: {outcome_text(cond)}"
        return Outcome(check.label, None, why=why, numbers={"condition": cond})
    holds = None if cond.holds is None else test.holds
    return Outcome(check.label, holds, children=[cond, test])


def _side(ref, rec):
    """(mean, sd, n) of a Ref's trained seeds, or (None, why undecided)."""
    why = rec.status(ref.family, ref.arm)
    if why:
        return None, why
    s = stats(rec.values(ref.family, ref.arm, ref.metric))
    return (s, "") if s else (None, f"{ref.arm} recorded no {ref.metric}")


def _eval_Compare(check, rec):
    b, why_b = _side(check.b, rec)
    if isinstance(check.a, Ref):
        a, why_a = _side(check.a, rec)
    else:                                   # against a number: no spread on that side
        a, why_a = ((float(check.a), 0.0, b[2]) if b else None), ""
    why = "; ".join(w for w in (why_a, why_b) if w)
    if why:
        return Outcome(check.label, None, why=why)
    c = compare(a, b)
    if check.want == "within":
        holds = c["relative"] <= check.bound
        text = f"{c['relative']:+.1%} (at most {check.bound:+.0%})"
    else:
        holds = WANTS[check.want](c)
        text = f"difference {c['difference']:+.3g} (threshold {_fmt(c['threshold'])})"
    return Outcome(check.label, bool(holds), text, numbers=c)


OPS = {"<": lambda v, b: v < b, "<=": lambda v, b: v <= b, ">": lambda v, b: v > b, ">=": lambda v, b: v >= b}


def _eval_EveryRun(check, rec):
    values, why = [], []
    for ref in check.refs:
        arms = list(rec.results.get(ref.family, {}).get("arms", {})) if ref.arm == "*" else [ref.arm]
        if ref.arm == "*" and not arms:
            why.append(f"{ref.family} not run yet")
        for arm in arms:
            w = rec.status(ref.family, arm)
            if w:
                why.append(w)
            else:
                values += [(v, ref.family, arm) for v in rec.values(ref.family, arm, ref.metric)]
    if why or not values:
        return Outcome(check.label, None, why="; ".join(why) or "no values recorded")
    worst = (max if check.op in ("<", "<=") else min)(values, key=lambda t: t[0])
    holds = all(OPS[check.op](v, check.bound) for v, _, _ in values)
    return Outcome(check.label, holds, f"{'largest' if check.op in ('<', '<=') else 'smallest'} of {len(values)} "
                                       f"runs: {worst[0]:.4g} ({worst[1]}/{worst[2]}), bound {check.op} {check.bound:g}",
                   numbers={"worst": worst[0], "n": len(values)})


def _eval_Failures(check, rec):
    runs = rec.runs(check.ref.family, check.ref.arm)
    n = rec.planned(check.ref.family)
    if runs is None or len(runs) < n:
        return Outcome(check.label, None, why=f"{check.ref.arm}: {len(runs or [])} of {n} runs in")
    failed = rec.failed(check.ref.family, check.ref.arm)
    holds = len(failed) >= 1 if check.want == "some" else not failed
    return Outcome(check.label, holds, f"{len(failed)} of {len(runs)} failed", numbers={"failed": failed})


def _eval_LossJump(check, rec):
    runs = rec.runs(check.ref.family, check.ref.arm) or []
    failed = {s for s, _ in rec.failed(check.ref.family, check.ref.arm)} if runs else set()
    jumps = [loss_jump(r) for r in runs if r["seed"] in failed]
    if not jumps:
        return Outcome(check.label, None, why="no failed run")
    holds = all(j is not None and j["epoch"] <= check.max_epoch and j["density"] > check.min_density for j in jumps)
    text = "; ".join(f"step {j['step']} (epoch {j['epoch']:.2f}, density {j['density']:.3g}): +{j['rise']:.2f} nats"
                     for j in jumps if j)
    return Outcome(check.label, holds, text, numbers={"jumps": jumps})


def _relative_loss(pair, rec):
    (dense, why_d), (kp, why_k) = (_side(r, rec) for r in pair)
    if why_d or why_k:
        return None, "; ".join(w for w in (why_d, why_k) if w)
    r = kp[0] / dense[0]
    return (r - 1.0, r * math.sqrt((dense[1] / dense[0]) ** 2 + (kp[1] / kp[0]) ** 2)), ""


def _eval_RelativeGap(check, rec):
    (b, why_b), (a, why_a) = _relative_loss(check.b, rec), _relative_loss(check.a, rec)
    if why_a or why_b:
        return Outcome(check.label, None, why="; ".join(w for w in (why_b, why_a) if w))
    d, t = b[0] - a[0], 2 * math.sqrt(a[1] ** 2 + b[1] ** 2)
    c = {"difference": d, "threshold": t, "beyond_spread": abs(d) > t, "relative": b[0], "b": b, "a": a}
    return Outcome(check.label, bool(WANTS[check.want](c)), f"difference {d:+.3g} (threshold {_fmt(t)})", numbers=c)


# --- the printer -----------------------------------------------------------------------------------------
WORDS = {True: "holds", False: "does not hold", None: "undecided"}


def outcome_text(o):
    """One outcome as text. A leaf: 'label: numbers -> yes' (or 'undecided (why)'); a labelled group:
    'label: leaf numbers, leaf numbers -> yes'; an unlabelled group: its children, joined by '; '."""
    if not o.children:
        return f"{o.label + ': ' if o.label else ''}{_answer(o)}"
    if not o.label:
        return "; ".join(outcome_text(k) for k in o.children)
    parts = leaves(o)
    whys = {p.why for p in parts if p.holds is None}
    if all(p.holds is None for p in parts) and len(whys) == 1:
        return f"{o.label}: undecided ({whys.pop()})"
    inner = ", ".join(f"{p.label} {p.text}" if p.holds is not None else f"{p.label} undecided ({p.why})"
                      for p in parts)
    return f"{o.label}: {inner} -> {_yes(o.holds)}"


def _yes(holds):
    return {True: "yes", False: "no", None: "undecided"}[holds]


def _answer(o):
    if o.holds is None:
        return f"undecided ({o.why})"
    return f"{o.text} -> {_yes(o.holds)}"


def verdict_line(v, plan=None):
    """The markdown line of one verdict: id, claim, the verdict word, the numbers of every check.
    `plan`: {id: Verdict} of the plan a replication repeats, whose verdict is printed beside."""
    h = v.hypothesis
    added = "" if h.preregistered else " (added after the runs, not a planned hypothesis)"
    beside = ""
    if h.replicates and plan is not None and h.replicates in plan:
        beside = f" (the plan's {h.replicates} on seeds 0-2: {WORDS[plan[h.replicates].holds]})"
    reported = "".join(f"; reported beside it, deciding nothing: {_reported_text(o)}" for o in v.reported)
    return f"- **{h.id}**{added} {h.claim}: **{WORDS[v.holds]}**{beside}. {outcome_text(v.outcome)}{reported}"


def _reported_text(o):
    if o.holds is None:
        return f"{o.label}: undecided ({o.why})"
    rel = o.numbers.get("relative")
    return f"{o.label}: {'' if rel is None else f'{rel:+.1%}, '}{o.text}"


def leaves(outcome):
    """Every leaf outcome under `outcome` (for code that reads the numbers)."""
    if not outcome.children:
        return [outcome]
    return [leaf for k in outcome.children for leaf in leaves(k)]


__all__ = ["Ref", "Compare", "EveryRun", "Failures", "LossJump", "RelativeGap", "All", "Any", "Only", "Hypothesis",
           "Outcome", "Verdict", "compare", "evaluate", "verdict_line", "outcome_text", "leaves", "MIN_SEEDS"]
