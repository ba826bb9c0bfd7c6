"""The run records as the engine reads them: a family's JSON file (what `dkp.study.runner` writes),
its arms' per-seed values of any metric, and which runs count.

A run counts (is *trained*) unless it diverged (its training loss became NaN or infinite) or did
not train (its final validation perplexity is above NOT_TRAINED times the lowest arm mean of its
family). A study whose arms differ that much by design (students compressed 13x and 1.2x from one
teacher) counts divergence alone (`Records(..., not_trained=None)`). Only the seeds a family's plan
runs are read (`catalog.planned_seeds`): a family whose file holds more, because another plan added
seeds to the same arms, keeps its own plan's verdicts.
"""
from __future__ import annotations

import math
import os

import numpy as np

from dkp.core import io
from dkp.study.metrics import run_values
from dkp.training.configs import normalized

MIN_SEEDS = 3       # the project's rule: a comparison needs at least this many trained seeds a side
NOT_TRAINED = 2.0   # a final perplexity above this multiple of the family's lowest arm mean


def run_key(config_dict):
    """The identity of a run's config, whichever arm or family it was recorded under: its fields in this
    code's terms (`normalized`), its name left out. Two records with the same key and seed hold the same
    run (the runner reuses one family's finished run in another; a report counts it once)."""
    return tuple(sorted((k, v) for k, v in normalized(config_dict).items() if k != "name"))


def load_results(directory, names, quick=False):
    """{family: record} for every NAME.json (or NAME-quick.json) in `directory`, NAME among `names`.
    A file that is not valid JSON, or not an experiment record, is an error naming the file."""
    out = {}
    for name in names:
        path = os.path.join(directory, f"{name}{'-quick' if quick else ''}.json")
        if os.path.exists(path):
            out[name] = load_record(path)
    return out


def load_record(path):
    """One experiment record, checked: a ValueError names the file when it is malformed JSON or JSON
    that is not what `python -m dkp experiment` writes."""
    try:
        record = io.load_json(path)
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(record, dict) or not isinstance(record.get("arms"), dict) or "experiment" not in record:
        raise ValueError(f"{path}: not an experiment record (python -m dkp experiment writes one: a JSON object "
                         f"with 'experiment' and 'arms')")
    return record


def mean_sd(values):
    """{"mean", "std" (sample sd, 0 for one value), "n"} of a list of numbers: a run summary's shape."""
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def stats(values):
    """(mean, sample sd, n) of a list of numbers, or None when it is empty."""
    if not values:
        return None
    s = mean_sd(values)
    return s["mean"], s["std"], s["n"]


def stat(result, arm, key="final_valid_ppl"):
    """(mean, sd, n) of `key` over the seeds of `arm` as its summary holds it, or None without runs."""
    entry = result.get("arms", {}).get(arm) if result else None
    if not entry or not entry.get("summary"):
        return None
    s = entry["summary"][key]
    return s["mean"], s["std"], s["n"]


def failed_runs(result, not_trained=NOT_TRAINED):
    """{arm: [(seed, why)]} of the runs that diverged or did not train (final perplexity above
    `not_trained` times the lowest arm mean; None: divergence alone)."""
    done = [e["summary"]["final_valid_ppl"]["mean"] for e in result["arms"].values()
            if e.get("summary", {}).get("final_valid_ppl")]
    lowest = min(done) if done else math.inf
    out = {}
    for arm, entry in result["arms"].items():
        for r in entry.get("runs", []):
            if r.get("diverged"):
                out.setdefault(arm, []).append((r["seed"], f"diverged: {r['diverged']}"))
            elif not_trained is not None and r["final_valid_ppl"] > not_trained * lowest:
                out.setdefault(arm, []).append((r["seed"], f"did not train: final validation perplexity "
                                                           f"{r['final_valid_ppl']:.1f}"))
    return out


def untrained_runs(result, factor=NOT_TRAINED):
    """Runs that did not train: final validation perplexity above `factor` times the lowest arm
    mean of the experiment. [(arm, seed, final validation perplexity, after the first epoch)]."""
    means = [e["summary"]["final_valid_ppl"]["mean"] for e in result["arms"].values() if e.get("summary")]
    if not means:
        return []
    bar = factor * min(means)
    return [(arm, r["seed"], r["final_valid_ppl"], r["valid_ppl"][0])
            for arm, e in result["arms"].items() for r in e.get("runs", []) if r["final_valid_ppl"] > bar]


class Records:
    """The records of one study, with what the engine asks of them: an arm's per-seed values of a
    metric over its trained runs, or why there are none to decide with.

    results: {family: record}; planned(family) -> seeds its plan runs; control: (family, arm) whose
    run of the same seed a run's M2 is measured against (the search's `hold`), or None; not_trained:
    what `failed_runs` counts as not trained (None: divergence alone)."""

    def __init__(self, results, planned, control=None, not_trained=NOT_TRAINED):
        self.results, self.planned, self.control, self.not_trained = results, planned, control, not_trained

    def runs(self, family, arm):
        """The runs of `arm` among its plan's seeds, or None if the family or the arm is absent."""
        result = self.results.get(family)
        if not result or arm not in result["arms"]:
            return None
        n = self.planned(family)
        return [r for r in result["arms"][arm].get("runs", []) if r["seed"] < n]

    def failed(self, family, arm):
        """[(seed, why)] of the arm's runs (among its plan's seeds) that diverged or did not train."""
        n = self.planned(family)
        return [(s, why) for s, why in failed_runs(self.results[family], self.not_trained).get(arm, []) if s < n]

    def status(self, family, arm):
        """None when `arm` has trained in every seed its plan runs; else why it cannot decide yet:
        "not run yet", "k of n runs in" or "trained k of n"."""
        runs = self.runs(family, arm)
        n = self.planned(family)
        if runs is None:
            return f"{family}/{arm} not run yet"
        if len(runs) < n:
            return f"{arm}: {len(runs)} of {n} runs in"
        trained = len(runs) - len(self.failed(family, arm))
        if trained < max(n, MIN_SEEDS):
            return f"{arm}: trained {trained} of {n}"
        return None

    def arm_values(self, family, arm):
        """{metric: [value per trained seed]} of every metric `arm`'s runs recorded."""
        per_run = self._run_values(family, arm)
        names = dict.fromkeys(k for _, values in per_run for k in values)
        return {name: [v[name] for trained, v in per_run if trained and v.get(name) is not None] for name in names}

    def values(self, family, arm, metric):
        """[value per trained seed] of `metric` for `arm` (empty where a run did not record it)."""
        return [v[metric] for trained, v in self._run_values(family, arm) if trained and v.get(metric) is not None]

    def _run_values(self, family, arm):
        """[(trained, run_values)] of `arm`'s runs among its plan's seeds, each run's numbers computed
        once (M2 against the control's run of the same seed)."""
        runs = self.runs(family, arm) or []
        if not runs:
            return []
        failed = {s for s, _ in self.failed(family, arm)}
        config = self.results[family]["arms"][arm].get("config", {})
        holds = self._holds()
        return [(r["seed"] not in failed, run_values(r, config, holds.get(r["seed"]))) for r in runs]

    def _holds(self):
        if not self.control or self.control[0] not in self.results:
            return {}
        return {r["seed"]: r for r in self.runs(*self.control) or [] if not r.get("diverged")}
