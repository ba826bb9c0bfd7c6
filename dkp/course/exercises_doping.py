"""The exercises of notebooks 03-06 (what KP costs, doping, co-matrix adaptation, co-matrix
dropout): references from dkp's shape arithmetic, the annealer, the CSR sizes, the toy doped
matrices of notebooks 05 and 06 rebuilt from their seeds, the probes, and the committed records
(kp-loss.json, the search's cma-timing and cmr-schedule), with the hints for the common wrong
answers."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from dkp.compression.anneal import Annealer, doped_density
from dkp.compression.shapes import KronShape, kron_shape, structured_target
from dkp.core import io
from dkp.core.data import batchify, n_windows
from dkp.core.weights import Doped, Kronecker
from dkp.core.weights.sparse import csr_nbytes, n_keep
from dkp.course.diagnostics import effective_S, relative_noise
from dkp.course.exercise_protocol import (ANY, Exercise, Near, Reference, Unavailable, choice, flag, integer,
                                          number, pair, part_hints, record)
from dkp.course.exercises_foundations import ptb
from dkp.course.notebook import results_dir
from dkp.study import catalog, metrics, probes
from dkp.study import report as study_report
from dkp.study.plans import cma_search
from dkp.training.loop import build_model


# --- 03 · what KP costs ------------------------------------------------------------------------------

def lopsided_split():
    ref = KronShape(80, 10, 5, 20)          # W (400, 200) = A (80, 10) ⊗ B (m2, n2)
    right = {"B": (ref.m2, ref.n2), "n_params": ref.n_params, "compression": ref.compression,
             "max_rank": ref.max_rank}
    return Reference(right, rtol=1e-3, mistakes=[
        ({**right, "n_params": 400 * 200}, "A ⊗ B stores the entries of A and of B, not of their product"),
        ({**right, "max_rank": 200}, "rank(A ⊗ B) = rank(A) rank(B), and each factor's rank is at most its "
                                     "smaller side")],
        otherwise=part_hints({
            "B": "B's shape must give a 400x200 product with A 80x10: m = m1 m2 and n = n1 n2",
            "n_params": "A ⊗ B stores the entries of A and of B",
            "compression": "the compression is the dense matrix's entries over the stored parameters",
            "max_rank": "rank(A ⊗ B) = rank(A) rank(B), each factor's rank at most its smaller side"}))


@lru_cache(maxsize=None)
def _committed(name):
    path = results_dir() / name
    return io.load_json(path) if path.is_file() else None


def _kp_loss_runs():
    full = _committed("kp-loss.json")
    if full is None or not all(full["arms"].get(a, {}).get("runs") for a in ("dense", "kp")):
        raise missing("kp-loss.json")
    return {a: np.array([r["final_valid_ppl"] for r in full["arms"][a]["runs"]]) for a in ("dense", "kp")}


def missing(name):
    return Unavailable(f"data/results/{name} is absent or incomplete")


def kp_relative_loss():
    runs = _kp_loss_runs()
    dense, kp = runs["dense"].mean(), runs["kp"].mean()
    ref = kp / dense - 1
    return Reference(float(ref), atol=5e-4, rtol=0, mistakes=[
        (Near(100 * ref, 5e-3), "that looks like a percentage: give it as a fraction (0.05 for 5%)"),
        (float(1 - dense / kp), "that is relative to kp: divide by the dense arm's perplexity"),
        (float(kp - dense), "that is the difference in perplexity; divide it by the dense arm's mean")],
        otherwise="that is not mean(kp) / mean(dense) - 1 of the final validation perplexities")


def kp_loss_verdict():
    runs = _kp_loss_runs()
    threshold = 2 * np.hypot(*(v.std(ddof=1) for v in runs.values()))
    holds = bool(runs["kp"].mean() - runs["dense"].mean() > threshold)
    biased = 2 * np.hypot(*(v.std(ddof=0) for v in runs.values()))
    return Reference((float(threshold), holds), atol=0.01, rtol=0, mistakes=[
        ((float(biased), ANY), "use the sample standard deviation over seeds (ddof=1), not ddof=0"),
        ((float(threshold), not holds), "the threshold is right; compare the difference of the means with it")],
        otherwise=part_hints({0: "the threshold is 2 sqrt(s_dense^2 + s_kp^2), s the standard deviation over seeds",
                              1: "holds: whether mean(kp) - mean(dense) exceeds the threshold"}))


# --- 04 · doping ------------------------------------------------------------------------------------

def csr_bytes():
    m, n, itemsize = 400, 200, 4
    k = n_keep(0.02, m * n)
    return Reference(csr_nbytes(k, m, itemsize), rtol=0, mistakes=[
        (k * itemsize, "that is the values alone: CSR also stores a column index per value and the row pointers"),
        (k * (itemsize + 4), "add the row pointers: one int32 per row, plus one"),
        (k * (itemsize + 4) + m * 4, "there are m + 1 row pointers, not m"),
        (m * n * itemsize, "that is S stored dense")],
        otherwise="that is not values + column indices + row pointers of the stored entries")


def course_anneal():
    """The course-scale doped arm's annealer, as notebook 04's section 2 builds it."""
    config = catalog.arms("doping")["doped-kp"]
    base = catalog.SCALES["course"]["base"]
    steps = n_windows(batchify(ptb().train[:base.train_tokens], base.batch), base.bptt)
    return config, Annealer(config, steps)


def density_at_700():
    config, annealer = course_anneal()
    schedule = annealer.density_at(700)
    model = build_model(config, len(ptb().vocab), seed=0)   # the annealer up to step 700, no training
    for step in range(701):
        annealer.apply(model, step)
    applied = doped_density(model)
    return Reference({"schedule": float(schedule), "applied": float(applied)}, atol=1e-4, rtol=0, mistakes=[
        ({"schedule": ANY, "applied": float(schedule)},
         f"applied: that is the schedule at step 700, but the annealer re-masks only every {annealer.every} steps")],
        otherwise=part_hints({"schedule": "schedule: d_t of the cubic schedule at t = 700",
                              "applied": "applied: find the last re-mask step at or before 700 and the density "
                                         "(a whole number of kept entries) the schedule gives there"}))


def structured_budget():
    shape, compression, doping = (400, 200), 20, 0.01
    target = structured_target(shape, compression, doping)
    budget = shape[0] * shape[1] / target
    right = {"budget": budget, "structured_target": target, "factors": kron_shape(shape, target).factors}
    return Reference(right, rtol=1e-3, mistakes=[
        ({**right, "budget": shape[0] * shape[1] / compression, "structured_target": compression},
         "that is what the whole matrix may store; S's non-zeros take their share of it")],
        otherwise=part_hints({"budget": "budget: mn / c minus the non-zeros of S at its final density",
                              "structured_target": "structured_target: mn over the budget",
                              "factors": "factors: not the shapes dkp's rule picks for the structured target "
                                         "(use kron_shape)"}))


# --- 05 · co-matrix adaptation -----------------------------------------------------------------------

def toy_doped(S_of=None, seed=0, **cmr):
    """Notebooks 05's and 06's toy: a (32, 16) Kronecker part at 4x (seeded), and S = S_of(kp) or a
    seeded random S; float64."""
    shape = (32, 16)
    kp = Kronecker.init(shape, kron_shape(shape, 4), rng=np.random.default_rng(seed), scale=0.5, dtype=np.float64)
    S = S_of(kp) if S_of else np.random.default_rng(seed + 1).standard_normal(shape)
    return Doped(kp, density=cmr.pop("density", 1.0), S=S, **cmr)


def agreeing_branches():
    W = toy_doped(lambda kp: 0.5 * kp.to_dense())
    x = np.random.default_rng(1).standard_normal((200, 16))
    a, s = W.structured_forward(x), W.sparse_forward(x)
    na, ns = np.linalg.norm(a, axis=1), np.linalg.norm(s, axis=1)
    share = float(np.mean(ns ** 2 / (na ** 2 + ns ** 2)))
    cosine = float(np.mean(np.sum(a * s, axis=1) / (na * ns)))
    return Reference((share, cosine), atol=1e-3, rtol=0, mistakes=[
        ((1 / 3, ANY), "the share is of the energy: squared norms, ||S x||² / (||(A ⊗ B) x||² + ||S x||²)"),
        ((ANY, 0.5), "S x = ½ (A ⊗ B) x points the same way as (A ⊗ B) x: what cosine do parallel vectors have?")],
        otherwise="S x is a multiple of (A ⊗ B) x. What does that make the cosine, and what fraction of "
                  "||(A ⊗ B) x||² + ||S x||² is ||S x||²?")


@lru_cache(maxsize=1)
def _search_records():
    return study_report.records(cma_search.STUDY, results_dir() / "cma-search")


def _family(name):
    found = _search_records().results.get(name)
    if found is None:
        raise missing(f"cma-search/{name}.json")
    return found


def late_short_rise():
    entry = _family("cma-timing")["arms"]["late-short"]
    m1 = {r["seed"]: metrics.run_metrics(r, entry["config"])["M1"] for r in entry["runs"]}
    return Reference(float(m1[1]), atol=1e-6, mistakes=[
        (float(-m1[1]), "the rise is the last anneal point minus the first, not the first minus the last"),
        *[(float(v), f"that is seed {s}'s rise; the exercise asks for seed 1") for s, v in m1.items() if s != 1]],
        otherwise="that is not the last anneal point minus the first, perplexity with S on, seed 1")


FRACTIONS = (0.5, 0.2, 0.1, 0.05)


def pruning_threshold(model, ids, bptt):
    trained = probes.perplexity(model, ids, 10, bptt)
    costly = [f for f in FRACTIONS if probes.perplexity_s_pruned(model, ids, 10, bptt, f) > 1.05 * trained]
    mistakes = [(min(costly), "that is the smallest fraction that costs 5%; the largest is wanted")] \
        if len(costly) > 1 else []
    return Reference(max(costly) if costly else None, mistakes=mistakes,
                     otherwise="compute the perplexity at each fraction and compare it with 1.05 times the "
                               "trained model's")


# --- 06 · co-matrix dropout --------------------------------------------------------------------------

def dropout_noise():
    W = toy_doped(density=0.25, cmr_p=0.2, cmr_variant="output")
    measured = relative_noise(W, np.random.default_rng(2).standard_normal((20, 16)), draws=400, seed=0)
    return Reference(measured, rtol=0.05, note=f"measured: {measured:.3f}", mistakes=[
        (0.25, "that is p / (1 - p), the variance ratio; the relative noise is an RMS, its square root"),
        (0.2, "that is p itself; write S_eff x - S x entry by entry as (mask / (1 - p) - 1) (S x)")],
        otherwise="write S_eff x - S x entry by entry as (mask / (1 - p) - 1) (S x) and take its variance")


def unscaled_factor():
    W = toy_doped(cmr_p=0.3, cmr_variant="output", cmr_rescale=False)
    S = np.random.default_rng(1).standard_normal((32, 16))       # toy_doped's S
    rng = np.random.default_rng(0)
    mean_eff = np.mean([effective_S(W, rng, repeats=4) for _ in range(100)], axis=(0, 1))   # (m, n)
    measured = float(np.sum(mean_eff * S) / np.sum(S * S))     # the factor that best maps S to E[S_eff]
    return Reference(measured, atol=0.02, rtol=0, mistakes=[
        (1 / 0.7, "that is the rescaling 1 / (1 - p), which cmr_rescale=False leaves out"),
        (0.3, "that is the share dropped; what is kept, on average?")],
        note=f"measured: {measured:.3f}; at evaluation S counts 1/{measured:.2f} = {1 / measured:.2f} times "
             f"what training saw",
        otherwise="each entry is kept with probability 1 - p and not scaled")


def dropout_dependence():
    _family("cmr-schedule")
    rec = _search_records()
    m4 = rec.arm_values("cmr-schedule", "output-p0.3")["M4"]
    plain = float(np.mean(rec.arm_values("cmr-schedule", "late-short")["M4"]))
    ref = float(np.mean(m4))
    return Reference(ref, atol=1e-6, note=f"{ref:.1%}; {plain:.1%} without dropout", mistakes=[
        (plain, "that is the arm without dropout (late-short); the exercise asks for output-p0.3"),
        (1 + ref, "the ratio minus 1: 1.05 means 5% worse, the answer 0.05"),
        (Near(100 * ref, 1e-4), "give a fraction (0.05 for 5%), not a percentage")],
        otherwise="one ratio minus 1 per seed (S off over S on), then their mean")


EXERCISES = [
    Exercise("03.1", record(B=pair(integer(), integer(), "(m2, n2)"), n_params=integer(), compression=number(),
                            max_rank=integer()), lopsided_split),
    Exercise("03.2", number("a fraction, e.g. 0.05 for 5%"), kp_relative_loss),
    Exercise("03.3", pair(number(), flag(), "(threshold, holds)"), kp_loss_verdict),
    Exercise("04.1", integer("the bytes, a whole number"), csr_bytes),
    Exercise("04.2", record(schedule=number(), applied=number()), density_at_700),
    Exercise("04.3", record(budget=number(), structured_target=number(),
                            factors=pair(pair(integer(), integer(), "(m1, n1)"), pair(integer(), integer(), "(m2, n2)"),
                                         "((m1, n1), (m2, n2))")), structured_budget),
    Exercise("05.1", pair(number(), number(), "(share, cosine)"), agreeing_branches),
    Exercise("05.2", number(), late_short_rise),
    Exercise("05.3", choice(FRACTIONS + (None,)), pruning_threshold, needs=("model", "ids", "bptt")),
    Exercise("06.1", number(), dropout_noise),
    Exercise("06.2", number(), unscaled_factor),
    Exercise("06.3", number("a fraction, e.g. 0.05 for 5%"), dropout_dependence),
]
