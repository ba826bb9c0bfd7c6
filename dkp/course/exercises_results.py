"""The exercises of notebooks 07-10 (every method at one compression, inference speed, GroupReduce,
distillation and the whole model): references from dkp's sizing rules and weight objects, the
benchmark's own gate matrices, GroupReduce's functions on the notebook's trained matrices, and the
committed records (methods.json, inference.json, whole-model), with the hints for the common wrong
answers."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from dkp.bench import matrices as bench
from dkp.bench import records as speed_records
from dkp.compression import groupreduce as gr
from dkp.compression.shapes import RTOL, kron_shape, low_rank_rank
from dkp.core import io
from dkp.core.weights import Doped, Hybrid
from dkp.course.exercise_protocol import (ANY, Exercise, Near, Reference, Unavailable, choice, flag, integer,
                                          names, number, pair, part_hints, record, vector)
from dkp.course.notebook import repo_root, results_dir
from dkp.study import catalog
from dkp.study import report as study_report
from dkp.study.plans import whole_model


# --- 07 · every method at one compression ------------------------------------------------------------

def low_rank_at_15x():
    (m, n), target = (400, 200), 15
    r = low_rank_rank((m, n), target)

    def otherwise(answer, ref):
        a = int(answer)
        if a < 1:
            return "the rank is a positive whole number"
        if m * n / (a * (m + n)) < target * (1 - RTOL):
            return f"rank {a} stores {a * (m + n):,} parameters, {m * n / (a * (m + n)):.2f}x: below the target"
        return f"rank {a} meets the target, but a larger rank does too: the largest rank that meets it is wanted"
    return Reference(r, rtol=0, mistakes=[
        (r + 1, "that rank stores too many parameters: below the target"),
        (r - 1, "that rank meets the target, but a larger rank does too: the largest rank that meets it is "
                "wanted")], otherwise=otherwise)


def doped_hybrid_size():
    shape = (200, 100)
    W = Doped(Hybrid.init(shape, n_dense_rows=4, rank=2, rng=np.random.default_rng(0)), density=0.01)
    right = {"n_params": W.n_params, "compression": shape[0] * shape[1] / W.n_params, "n_bytes": W.n_bytes}
    return Reference(right, rtol=1e-3, mistakes=[
        ({**right, "n_params": W.structured.n_params,
          "compression": shape[0] * shape[1] / W.structured.n_params}, "add S's non-zeros to the parameters"),
        ({**right, "n_bytes": 4 * W.n_params}, "n_bytes: S's CSR index arrays count too (an int32 column index per "
                                               "non-zero, m + 1 int32 row pointers)")],
        otherwise=part_hints({
            "n_params": "n_params: count D (d x n), U ((m - d) x r), V (r x n) and the non-zeros of S",
            "compression": "compression: mn over the parameters stored",
            "n_bytes": "n_bytes: float32 for D, U, V, plus S in CSR (values, int32 column indices, m + 1 int32 "
                       "row pointers)"}))


@lru_cache(maxsize=None)
def _committed(path):
    path = results_dir() / path
    return io.load_json(path) if path.is_file() else None


def methods_ranking():
    full = _committed("methods.json")
    if full is None or not all(e.get("runs") for e in full["arms"].values()):
        raise Unavailable("data/results/methods.json is absent or incomplete")
    means = {arm: float(np.mean([r["final_valid_ppl"] for r in e["runs"]])) for arm, e in full["arms"].items()}
    ranking = sorted(means, key=means.get)

    def otherwise(answer, ref):
        if sorted(answer) != sorted(ranking):
            return f"answer with a list of the {len(ranking)} arms of the experiment, each once: {sorted(ranking)}"
        i = next(i for i, (a, b) in enumerate(zip(answer, ranking)) if a != b)
        return (f"position {i + 1} is wrong: {answer[i]} there has a mean final validation perplexity of "
                f"{means[answer[i]]:.2f}, but a lower one is left")
    return Reference(ranking, mistakes=[(ranking[::-1], "that is the highest perplexity first: the best (lowest) "
                                                        "comes first")], otherwise=otherwise)


# --- 08 · inference speed ----------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _bench_matrices():
    methods = {mt.name: mt for mt in bench.gate_matrices(np.random.default_rng(0))}
    ks = {prefer: kron_shape(bench.SHAPE, bench.TARGET, prefer=prefer) for prefer in ("rank", "flops")}
    return methods, ks


def doped_intensity():
    methods, ks = _bench_matrices()
    M = bench.SHAPE[0]
    mt = methods[f"doped {bench.kp_label(ks['flops'], 'flops')[3:]} +2.0%"]
    right = (mt.n_bytes, 2 * mt.macs / mt.n_bytes)
    return Reference(right, mistakes=[
        ((mt.n_bytes - 4 * (M + 1), ANY), "almost: CSR also stores M + 1 row pointers (int32)"),
        ((mt.n_bytes - 4 * mt.W.nnz, ANY), "each non-zero of S costs its value and its column index: 4 + 4 bytes"),
        ((mt.n_bytes, mt.macs / mt.n_bytes), "a multiply-add is 2 FLOPs"),
        ((mt.n_bytes, 2 * ks["flops"].flops / mt.n_bytes), "S adds one multiply-add per non-zero to the Kronecker "
                                                           "product's")],
        otherwise=part_hints({0: "the bytes: A and B in float32, and S's values, column indices and row pointers",
                              1: "the intensity: 2 FLOPs per multiply-add, over the bytes"}))


def _cold_fused(prefer):
    record = speed_records.load_results(results_dir() / "inference.json")
    _, ks = _bench_matrices()
    sel = {r["method"]: r for r in speed_records.select(record["rows"], cache="cold", variant="fused")}
    return sel["dense"], sel[bench.kp_label(ks[prefer], prefer)]


def memory_bound_estimate():
    methods, _ = _bench_matrices()
    dense_row, kp_row = _cold_fused("rank")
    t_us = methods[kp_row["method"]].n_bytes / (dense_row["weight_gb_per_s"] * 1e9) * 1e6
    speedup = dense_row["seconds"] / (t_us * 1e-6)
    ratio = kp_row["seconds"] * 1e6 / t_us
    return Reference((t_us, speedup), mistakes=[
        ((t_us * 1e-6, ANY), "that is in seconds; give microseconds"),
        ((t_us * 1e9 / 2 ** 30, ANY), "here a GB is 10^9 bytes, not 2^30"),
        ((t_us, dense_row["seconds"] / kp_row["seconds"]), "that is the measured speed-up; the exercise asks for "
                                                            "the memory-bound one")],
        note=f"measured, the fused Kronecker step took {kp_row['seconds'] * 1e6:.1f} us, {ratio:.1f}x this bound: "
             + ("weight traffic is not what limits it" if ratio > 1.5 else "it is close to memory-bound"),
        otherwise=part_hints({0: "the time: the KP's weight bytes divided by dense's streaming rate",
                              1: "the speed-up: dense's fused time over that time"}))


def speedup_identity():
    dense_row, kp_row = _cold_fused("flops")
    speedup = dense_row["seconds"] / kp_row["seconds"]
    beats = bool(speedup > kp_row["flop_bound"])
    return Reference((speedup, beats), mistakes=[
        ((kp_row["flop_bound"] * dense_row["gflops"] / kp_row["gflops"], ANY),
         "the GFLOP/s ratio is upside down: the method's over dense's"),
        ((speedup, not beats), "the speed-up is right, but compare it with the FLOP bound again")],
        otherwise="the speed-up is FLOP bound x (its GFLOP/s / dense's GFLOP/s)")


# --- 09 · GroupReduce --------------------------------------------------------------------------------

def shared_rank():
    shape, groups, size = (10_000, 200), 10, 1_000
    budget = gr.budget_params(shape, 6)
    ranks = gr.group_ranks([size] * groups, [1.0] * groups, shape[1], budget, alpha=0.0)
    r = int(min(ranks))
    return Reference(r, rtol=0, mistakes=[
        (budget // (groups * size), "each group also stores its V_g, r x H: a group of rank r costs r (n_g + H)"),
        (budget // (groups * shape[1]), "each group also stores its U_g, n_g x r: a group of rank r costs r (n_g + H)"),
        (r + 1, "rounded up: all ten groups at that rank exceed the budget")],
        otherwise="ten groups of rank r cost 10 r (1,000 + 200) parameters; the largest r within the budget")


ALPHAS = (0, 0.5, 1)


def best_alpha(E, freq):
    errors = {a: gr.weighted_error(E, gr.group_reduce(E, freq, 6, alpha=a), freq) for a in ALPHAS}
    best, worst = min(errors, key=errors.get), max(errors, key=errors.get)
    return Reference(best, note="weighted errors " + ", ".join(f"alpha {a}: {e:.4f}" for a, e in errors.items()),
                     mistakes=[(worst, "that alpha has the highest weighted error of the three")],
                     otherwise="compute gr.weighted_error(E, gr.group_reduce(E, freq, 6, alpha=a), freq) for each "
                               "alpha and take the lowest")


def refinement_gain(D, freq):
    e0, e3 = (gr.weighted_error(D, gr.group_reduce(D, freq, 6, refine=k), freq) for k in (0, 3))
    fall = 1 - e3 / e0
    return Reference(float(fall), rtol=1e-4, mistakes=[
        (float(e0 - e3), "that is the fall in error itself; the exercise asks for it relative to refine=0's"),
        (float(e3 / e0), "that is the ratio of the two errors; the fall is 1 minus it"),
        (float(-fall), "the sign: a fall is refine=0's error minus refine=3's, over refine=0's")],
        otherwise="1 - (weighted error with refine=3) / (weighted error with refine=0), both at 6x on D")


# --- 10 · distillation and the whole model -----------------------------------------------------------

KL_LOGITS = np.array([2.0, 1.0, 0.0, -1.0])
KL_TEACHER = np.array([0.1, 0.2, 0.3, 0.4])


def kl_gradient():
    z = KL_LOGITS - KL_LOGITS.max()
    p = np.exp(z) / np.exp(z).sum()
    q = KL_TEACHER
    return Reference(p - q, atol=1e-6, rtol=1e-6, mistakes=[
        (q - p, "the sign: raising a logit whose p is above q raises the KL"),
        (p, "the teacher's q is missing: d/dz of -sum_w q_w log p_w is p - q"),
        (-q / p, "that is the gradient with respect to p; chain it through the softmax to the logits")],
        otherwise="the gradient of KL(q || p) with respect to the logits is p - q, p = softmax(logits)")


@lru_cache(maxsize=1)
def _whole_records():
    return study_report.records(whole_model.STUDY, repo_root() / catalog.WHOLE_OUT)


def _whole_values(arm):
    values = _whole_records().arm_values("whole-model", arm) if "whole-model" in _whole_records().results else {}
    if not values.get("valid"):
        raise Unavailable("data/results/whole-model/whole-model.json is absent or incomplete")
    return values


def distillation_cost():
    plain, ilkd = (_whole_values(a) for a in ("doped-kp-teacher", "doped-kp-teacher-ilkd"))
    cost = float(np.mean(ilkd["valid"]) - np.mean(plain["valid"]))
    return Reference(cost, atol=1e-6, mistakes=[
        (-cost, "the sign: the distilled student's mean minus the undistilled one's"),
        (Near(float(np.mean(ilkd["test"]) - np.mean(plain["test"])), 1e-6), "that is the test perplexity; use the "
                                                                            "final validation perplexity")],
        otherwise="mean final validation perplexity of doped-kp-teacher-ilkd minus that of doped-kp-teacher")


def index_share():
    _whole_values("groupreduce-12x-doped-kp")
    runs = _whole_records().results["whole-model"]["arms"]["groupreduce-12x-doped-kp"]["runs"]
    model = next(r for r in runs if r["seed"] == 0)["model"]
    values = 4 * model["n_params"] / model["n_bytes"]
    return Reference(1 - values, mistakes=[
        (values, "that is the share of the values (4 bytes a parameter); the indices are the rest"),
        (Near(100 * (1 - values), 1e-6), "give a fraction, not a percentage")],
        otherwise="1 - 4 n_params / n_bytes of the float32 model (its `model` record)")


EXERCISES = [
    Exercise("07.1", integer("the rank, a whole number"), low_rank_at_15x),
    Exercise("07.2", record(n_params=integer(), compression=number(), n_bytes=integer()), doped_hybrid_size),
    Exercise("07.3", names("a list of the arms' names, best first"), methods_ranking),
    Exercise("08.1", pair(integer(), number(), "(n_bytes, flops_per_byte)"), doped_intensity),
    Exercise("08.2", pair(number(), number(), "(time_us, speedup)"), memory_bound_estimate),
    Exercise("08.3", pair(number(), flag(), "(speedup, beats_bound)"), speedup_identity),
    Exercise("09.1", integer("the rank, a whole number"), shared_rank),
    Exercise("09.2", choice(ALPHAS), best_alpha, needs=("E", "freq")),
    Exercise("09.3", number("a fraction, e.g. 0.05 for 5%"), refinement_gain, needs=("D", "freq")),
    Exercise("10.1", vector(4, "an array of the 4 partial derivatives"), kl_gradient),
    Exercise("10.2", number("a difference of perplexities"), distillation_cost),
    Exercise("10.3", number("a fraction between 0 and 1"), index_share),
]
