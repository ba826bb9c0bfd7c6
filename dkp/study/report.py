"""A study's report: its families' tables and the verdict on each of its hypotheses, in markdown,
the same text for `python -m dkp report DIR`, the READMEs under data/results and the notebooks.

A `Study` is data: the families it reads, the columns of its tables, its hypotheses (built from the
catalog by its plan module), the control arm M2 is measured against, and families borrowed from
another folder. `markdown(study, directory)` prints it; `verdicts(study, directory)` gives the
verdicts to code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from dkp.study import catalog
from dkp.study.engine import evaluate, verdict_line
from dkp.study.records import MIN_SEEDS, NOT_TRAINED, Records, load_results, stats


@dataclass(frozen=True)
class Column:
    header: str
    metric: str
    digits: int = 2
    scale: float = 1.0
    unit: str = ""
    per_arm: bool = False     # read from the arm's entry (e.g. its LSTM compression), not its runs


@dataclass(frozen=True)
class Study:
    name: str
    families: tuple
    columns: tuple
    hypotheses: object                        # () -> [Hypothesis]
    control: tuple | None = None              # (family, arm) of the M2 control
    borrowed: dict = field(default_factory=dict)   # {family: folder relative to the study's}
    sections: tuple = ()                      # extra (records) -> [markdown lines] after the tables
    verdict_heading: str = "The verdicts"
    not_trained: float | None = NOT_TRAINED   # see dkp.study.records (None: only a diverged run fails)


def records(study, directory, quick=False):
    """The study's `Records`: its families in `directory`, the borrowed ones from their folders."""
    results = load_results(directory, study.families, quick)
    for family, rel in study.borrowed.items():
        results.update(load_results(os.path.join(directory, rel), (family,), quick))
    return Records(results, catalog.planned_seeds, study.control, study.not_trained)


def records_of(study, results):
    """The study's `Records` of results already loaded ({family: record}), e.g. a notebook's live runs."""
    return Records(results, catalog.planned_seeds, study.control, study.not_trained)


def verdicts(study, directory=None, quick=False, rec=None):
    """[Verdict] of every hypothesis of `study` on the records in `directory` (or `rec`)."""
    rec = rec or records(study, directory, quick)
    return evaluate(study.hypotheses(), rec)


def fmt(s, digits=1, scale=1.0, unit=""):
    """(mean, sd, n) as 'mean ± sd', with '(n=k)' when fewer than MIN_SEEDS seeds; '-' for None."""
    if s is None:
        return "-"
    m, sd, n = s
    return f"{m * scale:.{digits}f}{unit} ± {sd * scale:.{digits}f}{unit}" + ("" if n >= MIN_SEEDS else f" (n={n})")


def table(study, rec, family):
    """A markdown table of every arm of `family`: trained / runs, then the study's columns
    (mean ± sd over the trained seeds its plan runs)."""
    result = rec.results[family]
    cols = [c for c in study.columns if c.per_arm or _recorded(rec, family, c.metric)]
    lines = ["| arm | trained / runs | " + " | ".join(c.header for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for arm, entry in result["arms"].items():
        runs = rec.runs(family, arm) or []
        trained = len(runs) - len(rec.failed(family, arm)) if runs else 0
        cells = []
        for c in cols:
            if c.per_arm:
                cells.append(f"{entry[c.metric]:.{c.digits}f}{c.unit}" if c.metric in entry else "-")
            else:
                cells.append(fmt(stats(rec.values(family, arm, c.metric)), c.digits, c.scale, c.unit))
        lines.append(f"| {arm} | {trained} / {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _recorded(rec, family, metric):
    return any(rec.values(family, arm, metric) for arm in rec.results[family]["arms"])


def provenance(result):
    """The line under a family's heading: its command, commit, the wall time of its invocations (written
    as each run lands, so a call stopped midway counts up to its last run) and what its runs' own
    training took."""
    wall = (f"{result['wall_seconds'] / 60:.0f} min wall" if "wall_seconds" in result
            else "no wall time recorded yet")
    runs = [r for e in result["arms"].values() for r in e.get("runs", [])]
    spent = sum(r.get("seconds", 0.0) for r in runs) / 60
    return (f"`{result.get('command')}` (commit {str(result.get('commit'))[:10]}, {wall}; its {len(runs)} runs "
            f"took {spent:.0f} min of training between them, counting runs taken from other families)")


def markdown(study, directory, quick=False):
    """The study's report: a section per family present (heading, provenance, table), the extra
    sections, then every verdict, each replication's beside the plan's."""
    rec = records(study, directory, quick)
    lines = []
    for family in study.families:
        if family in rec.results:
            lines += [f"### {family}", "", provenance(rec.results[family]), "", table(study, rec, family), ""]
    for section in study.sections:
        lines += section(rec)
    found = verdicts(study, rec=rec)
    plan = {v.id: v for v in found}
    lines += [f"### {study.verdict_heading}", ""] + [verdict_line(v, plan) for v in found]
    return "\n".join(lines) + "\n"


def detect(directory, studies, quick=False):
    """The study whose families have records in `directory` (the first in `studies` order), or None."""
    for study in studies:
        if load_results(directory, study.families, quick):
            return study
    return None
