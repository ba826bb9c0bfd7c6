"""Kronecker transformers and converged teachers (data/results/transformer/PLAN.md), declared: T1-T9
(the Kronecker transformer from a converged teacher, distilled layer by layer, against a
DistilGPT2-style student; doping and co-matrix adaptation in a transformer) and L1-L2 (doped KP
LSTMs from a converged teacher, with and without distillation).

What the plan reads of each run (`dkp.study.metrics.run_values`): the final validation perplexity
("valid"), the teacher's validation perplexity at the switch ("switch_before", step 0: the
checkpoint the student starts from), the whole model's compression and parameters, the search's
M1, M4 and M6 for `transformer-cma`. `headline(verdicts)` gives the sentence the plan fixed for
each outcome.
"""
from __future__ import annotations

from dkp.study import catalog
from dkp.study.engine import All, Any, Compare, EveryRun, Hypothesis, Only, Ref
from dkp.study.plans.cma_search import fix, rises
from dkp.study.report import Column, Study

K, C, L = catalog.TRANSFORMER                    # kron-transformer, transformer-cma, lstm-converged
BEST_AT = 8.0                                    # T7: whole-model compression (parameters) of at least this ...
WITHIN = 0.10                                    # ... ending within this of the teacher's validation perplexity
SAME_SIZE = 0.10                                 # T4 is decided only if the two students' sizes are this close
S_OFF = 0.05                                     # T8: switching S off at the end costs more than this


def lower(family, b, a, metric="valid", label=None):
    return Compare(Ref(family, b, metric), Ref(family, a, metric), "lower", label=label or f"{b} vs {a}")


def teacher_ppl():
    """The teachers' validation perplexities, seed by seed: what the students of `kp-teacher-full`
    measured at step 0 before compressing (every student of a seed starts from the same teacher)."""
    return Ref(K, "kp-teacher-full", "switch_before")


def within_teacher(arm):
    """`arm` at BEST_AT x or more (every run) ending within WITHIN of the teachers' mean perplexity."""
    return All((EveryRun((Ref(K, arm, "compression"),), ">=", BEST_AT, label=f"{arm} at {BEST_AT:g}x or more"),
                Compare(Ref(K, arm, "valid"), teacher_ppl(), "within", WITHIN, label=f"{arm} against the teacher")),
               label=arm)


def same_size(b, a):
    """Two arms' parameter counts within SAME_SIZE of each other, both ways."""
    return All((Compare(Ref(K, b, "n_params"), Ref(K, a, "n_params"), "within", SAME_SIZE, label=f"{b} / {a} - 1"),
                Compare(Ref(K, a, "n_params"), Ref(K, b, "n_params"), "within", SAME_SIZE, label=f"{a} / {b} - 1")),
               label="parameters within 10%")


def hypotheses():
    return [
        Hypothesis("T1", "the teacher's start: kp-teacher ends lower than kp-scratch, full budget",
                   lower(K, "kp-teacher-full", "kp-scratch-full")),
        Hypothesis("T2", "ILKD on the light budget: kp-teacher-ilkd ends lower than kp-teacher",
                   lower(K, "kp-teacher-ilkd-light", "kp-teacher-light")),
        Hypothesis("T3", "ILKD on the full budget: kp-teacher-ilkd ends lower than kp-teacher",
                   lower(K, "kp-teacher-ilkd-full", "kp-teacher-full")),
        Hypothesis("T4", "KnGPT2 against DistilGPT2: the Kronecker student with ILKD (rank 2, 2x on the blocks) ends "
                         "lower than the half-depth dense student distilled on the logits, light budget, at about "
                         "the same parameter count",
                   Only(same_size("kp-teacher-ilkd-matched-light", "distil-half-light"),
                        lower(K, "kp-teacher-ilkd-matched-light", "distil-half-light")),
                   reported=(Compare(Ref(K, "kp-teacher-ilkd-matched-full", "valid"), Ref(K, "distil-half-full", "valid"),
                                     "lower", label="the same on the full budget"),)),
        Hypothesis("T5", "doping in a transformer: doped-teacher ends lower than kp-teacher, full budget",
                   lower(K, "doped-teacher-full", "kp-teacher-full"),
                   reported=(lower(K, "doped-teacher-light", "kp-teacher-light", label="the same on the light budget"),)),
        Hypothesis("T6", "ILKD with doping: doped-teacher-ilkd ends lower than doped-teacher, full budget",
                   lower(K, "doped-teacher-ilkd-full", "doped-teacher-full")),
        Hypothesis("T7", f"some student at {BEST_AT:g}x or more of whole-model compression (parameters) ends within "
                         f"{WITHIN:.0%} of its teacher's validation perplexity",
                   Any(tuple(within_teacher(arm) for arm in catalog.transformer_arms(K)))),
        Hypothesis("T8", "co-matrix adaptation in a transformer: a late anneal raises the slice perplexity while S "
                         "is sparsified (M1 above hold's over the same interval) and at the end switching S off "
                         f"costs more than {S_OFF:.0%} (M4)",
                   All((Compare(Ref(C, "late", "M1"), Ref(C, "hold", "M1"), "higher", label="late M1 vs hold's"),
                        EveryRun((Ref(C, "late", "M4"),), ">", S_OFF, label=f"late M4 above {S_OFF:.0%} in every seed"))),
                   reported=(rises(C, "late", label="late M1 (its end against its start)"),)),
        Hypothesis("T9", "co-matrix dropout fixes co-matrix adaptation in a transformer: lowers M1 or M6 beyond the "
                         "spread without raising M3", fix(C, "late-output-p0.3", "late")),
        Hypothesis("L1", "ILKD from a converged LSTM teacher: doped-kp-teacher-ilkd ends lower than doped-kp-teacher, "
                         "course budget",
                   lower(L, "doped-kp-teacher-ilkd-course", "doped-kp-teacher-course"),
                   reported=(lower(L, "doped-kp-teacher-ilkd-light", "doped-kp-teacher-light",
                                   label="the same on the light budget"),)),
        Hypothesis("L2", "the KL alone from a converged LSTM teacher: doped-kp-teacher-kl ends lower than "
                         "doped-kp-teacher, course budget",
                   lower(L, "doped-kp-teacher-kl-course", "doped-kp-teacher-course"),
                   reported=(lower(L, "doped-kp-teacher-kl-light", "doped-kp-teacher-light",
                                   label="the same on the light budget"),)),
    ]


def teachers_stats(rec):
    """(mean, sd, n) of the transformer teachers' validation perplexities as the kp-teacher students
    measured them at step 0 (the full budget's, else the light budget's), or None before either ran."""
    from dkp.study.records import stats
    return stats(rec.values(K, "kp-teacher-full", "switch_before") or rec.values(K, "kp-teacher-light", "switch_before"))


def against_teacher(rec):
    """{arm: (mean final validation perplexity, its distance from the teachers' mean as a fraction,
    whole-model compression against the teacher, trained seeds)} of every kron-transformer arm that has
    trained every seed of its plan, or {} before the teachers' perplexities are in. Which student is
    best is read from this after the runs, as the plan says (`best_student`)."""
    from dkp.study.records import stats
    teacher = teachers_stats(rec)
    result = rec.results.get(K)
    if teacher is None or result is None:
        return {}
    out = {}
    for arm, entry in result["arms"].items():
        s = stats(rec.values(K, arm, "valid"))
        if s is not None and not rec.status(K, arm):
            out[arm] = (s[0], s[0] / teacher[0] - 1, entry.get("compression", float("nan")), s[2])
    return out


def best_student(rec, at_least=BEST_AT):
    """(arm, its row of `against_teacher`) of the student with the lowest mean perplexity among those
    at `at_least` x or more of whole-model compression, or None: read after the runs."""
    rows = {a: r for a, r in against_teacher(rec).items() if r[2] >= at_least}
    return min(rows.items(), key=lambda kv: kv[1][0]) if rows else None


def teacher_lines(rec):
    """The teachers' validation perplexities, as each family's students measured them at step 0 (the
    first arm whose runs start from the whole teacher), seed by seed."""
    from dkp.study.records import stats
    from dkp.study.report import fmt
    lines = []
    for family, name in catalog.TEACHER_OF.items():
        if family == C or family not in rec.results:        # transformer-cma's teachers are kron-transformer's
            continue
        for arm, entry in rec.results[family]["arms"].items():
            runs = [r for r in rec.runs(family, arm) or [] if r.get("switch")]
            if runs and not entry["config"].get("teacher_blocks"):
                values = [r["switch"]["valid_ppl_before"] for r in runs]
                lines.append(f"- `{name}`, seeds {', '.join(str(r['seed']) for r in runs)} (as `{family}/{arm}` "
                             f"measured them): validation perplexity {fmt(stats(values), 2)}")
                break
    return ["### The teachers", "", *lines, ""] if lines else []


def cost(rec):
    """What the study cost in minutes of one core, from its records: ({family: (runs, minutes)},
    (teachers, minutes), hours in all). A run's minutes are its own `seconds` (its probes and evaluations
    included; a run two families share, the same config and seed, counted once); a teacher's are its
    record's `minutes` (each teacher once). Read after the runs; the plan estimated about 7 hours."""
    from dkp.study.records import run_key
    seen, families = set(), {}
    for family in (K, C, L):
        result = rec.results.get(family)
        if result is None:
            continue
        minutes, n = 0.0, 0
        for entry in result["arms"].values():
            key = run_key(entry["config"])
            for r in entry.get("runs", []):
                if (key, r["seed"]) not in seen:
                    seen.add((key, r["seed"]))
                    minutes, n = minutes + r.get("seconds", 0.0) / 60, n + 1
        families[family] = (n, minutes)
    teachers = {}
    for result in rec.results.values():
        teachers.update(result.get("teachers", {}))
    spent = (len(teachers), sum(t.get("minutes", 0.0) for t in teachers.values()))
    return families, spent, (sum(m for _, m in families.values()) + spent[1]) / 60


def cost_lines(rec):
    """The report's section on what the study cost (`cost`), or nothing before any family has a record."""
    families, (n_teachers, teacher_minutes), hours = cost(rec)
    if not families:
        return []
    lines = [f"- `{family}`: {n} run{'' if n == 1 else 's'}, {minutes:.0f} min"
             for family, (n, minutes) in families.items()]
    if n_teachers:
        lines.append(f"- the teachers: {n_teachers} trained, {teacher_minutes:.0f} min")
    return ["### What the study cost", "", "Minutes of one core, from the records (each run's own time, its probes and "
            "evaluations included):", "", *lines, f"- in all: {hours:.1f} hours", ""]


# The sentence the plan ("What the course will say") fixed for each outcome: (holds, does not hold)
SAYS = {
    "T1": ("the teacher's start is worth having in a transformer too",
           "the teacher's start is not worth having at this size and budget"),
    "T2": ("distillation from a converged teacher helps a Kronecker transformer on the light budget",
           "distillation from a converged teacher does not help a Kronecker transformer on the light budget"),
    "T3": ("distillation from a converged teacher helps a Kronecker transformer on the full budget",
           "distillation from a converged teacher does not help a Kronecker transformer on the full budget"),
    "T4": ("the Kronecker student distilled on a light budget beats the half-depth dense student, as KnGPT2 "
           "reports for GPT-2", "dkp does not reproduce KnGPT2's comparison with DistilGPT2 at its scale"),
    "T5": ("doping a transformer's Kronecker matrices helps (full budget); no published work had tried it",
           "doping a transformer's Kronecker matrices does not help (full budget); no published work had tried it"),
    "T6": ("distillation helps the doped Kronecker transformer (full budget)",
           "distillation does not help the doped Kronecker transformer (full budget)"),
    "T7": ("a student at 8x or more of the whole model ends within 10% of its teacher",
           "no student at 8x or more of the whole model ends within 10% of its teacher"),
    "T8": ("co-matrix adaptation shows beyond the LSTM: a late anneal raises a transformer's perplexity and leaves "
           "it dependent on S", "co-matrix adaptation does not show in the transformer as the plan defined it"),
    "T9": ("co-matrix dropout fixes co-matrix adaptation in a transformer, by the search's criterion",
           "co-matrix dropout does not fix co-matrix adaptation in a transformer, by the search's criterion"),
    "L1": ("distillation (ILKD) from a converged LSTM teacher helps its doped KP student",
           "distillation (ILKD) from a converged LSTM teacher does not help its doped KP student"),
    "L2": ("the KL term alone from a converged LSTM teacher helps its doped KP student",
           "the KL term alone from a converged LSTM teacher does not help its doped KP student"),
}


def headline(verdicts):
    """{id: the sentence the plan fixed for its outcome, or None while it is undecided} of every
    hypothesis, from its verdicts ({id: Verdict} or [Verdict])."""
    v = verdicts if isinstance(verdicts, dict) else {x.id: x for x in verdicts}
    return {hid: None if v[hid].holds is None else SAYS[hid][0 if v[hid].holds else 1] for hid in SAYS}


STUDY = Study(
    name="transformer", families=(K, C, L),
    columns=(Column("parameters", "n_params", 0, per_arm=True), Column("whole model x (params)", "compression", 1,
                                                                      per_arm=True),
             Column("x (bytes)", "byte_compression", 1, per_arm=True),
             Column("gate matrices x", "gate_compression", 1, per_arm=True),
             Column("valid ppl right after the switch", "switch_after", 1), Column("final valid ppl", "valid"),
             Column("test ppl", "test"), Column("M1 rise", "M1", 1), Column("M4 S off", "M4", 1, 100, "%"),
             Column("int8: ppl cost", "int8_cost", 2, 100, "%")),
    hypotheses=hypotheses, control=(C, "hold"), sections=(teacher_lines, cost_lines),
    # its students differ by design (13x and 1.2x from one teacher, light and full budgets): a run fails
    # only by diverging, never by ending far above another arm (decided before any verdict was read)
    not_trained=None)

__all__ = ["STUDY", "SAYS", "against_teacher", "best_student", "cost", "cost_lines", "headline", "hypotheses",
           "teachers_stats"]
