"""Named experiments: each a set of arms (configs) trained over several seeds, written to JSON.

    python -m dkp experiment NAME [--seeds N] [--quick] [--scale course|paper] [--jobs J] [--out DIR]

The experiments show the four effects of the course, one family each:

    kp-loss   dense vs a dense LSTM shrunk to the same LSTM parameter count vs KP
    doping    KP vs doped KP (annealed S, with and without co-matrix dropout)
    cma       doped KP annealed without CMR, with the CMA diagnostics along the anneal
    cmr       the same with CMR: a sweep of p for the "output" variant, and the three variants
    methods   doped KP vs pruning vs LMF vs HMD vs doped LMF vs doped HMD, at one compression
    recipes   the search behind each arm's optimizer: dense, pruning, KP, LMF, HMD and doped KP, LMF
              and HMD, each under plain SGD and under Adam (run it with --seeds 1)

The search for co-matrix adaptation and for what co-matrix dropout does (data/results/cma-search/,
its PLAN.md fixed before the runs) has families of its own, written to data/results/cma-search/
by default, whose runs record more along the way (SEARCH_PROBES):

    cma-timing     when and how fast S is annealed: early-and-long, early-and-short, late-and-short
                   (with and without recovery after it), and S never annealed (the control)
    cma-density    the final density of S: 1%, 0.1%, 0.01% (late-and-short anneal)
    cma-init       S starting at zero vs as the residual W - nearest KP of a briefly trained dense LSTM
    cmr-schedule   co-matrix dropout on the late-and-short anneal: constant p, p only below a
                   density threshold, p growing as S empties, and without the 1/(1-p) rescaling
    cmr-branch     whole-branch dropout on the early-and-long anneal, rescaled (as in `cmr`), not
                   rescaled, and only below a density threshold
    cma-long       the whole PTB training split for 3 epochs: dense, KP, doped KP with and without
                   co-matrix dropout (late-and-short anneal)

Every arm of a scale shares everything but what the arm changes (data, epochs, anneal window; the
optimizer goes by the kind of arm, see SCALES), so differences between arms come from the method.
`DIR/NAME.json` is rewritten atomically after every finished run, so an interrupted experiment
keeps what it finished; rerunning it skips the runs already there (same config and seed).
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from . import io
from .configs import Config, get_config

# --- scales ----------------------------------------------------------------------------------------
# "course": chosen so that every family, all arms and 3 seeds, fits in an hour on a 2-core laptop
# (see data/results/README.md for the search that chose it). "paper": Zaremba's medium model with
# its LSTM layers compressed 25x, as in the doping paper: one flag away, for people with time.
#
# Every arm trains with Zaremba's recipe (plain SGD, lr 1, halved after each epoch from
# `decay_after`, one global clip at 5), except the kinds of arm listed in `factor_recipe_for`, which
# use `factor_optimizer` (Adam): for each kind, the better of the two recipes in the `recipes`
# search (data/results/README.md). Arms made of factors alone (kp, lmf, hmd) do not train well under
# SGD, whose one learning rate suits a dense matrix's gradients, not the factors' (plain KP stays at
# perplexity 1,283); doped KP does better under SGD, doped LMF and HMD under Adam. The recipe of
# every arm is stored with its results.
FACTOR_RECIPE_FOR = ("kp", "lmf", "hmd", "doped-lmf", "doped-hmd")   # kinds of arm trained with Adam
SCALES = {
    "course": dict(base=get_config("small").with_(
        name="course", hidden=200, layers=2, epochs=2, bptt=20, dropout=0.0, init_scale=0.1,
        optimizer="sgd", lr=1.0, lr_decay=2.0, decay_after=1, clip=5.0, train_tokens=500_000,
        anneal_start=0.1, anneal_end=1.5, anneal_every=20, eval_tokens=0), compression=20.0, doping=0.01,
        cmr_p=0.3, factor_optimizer=dict(optimizer="adam", lr=2e-3), factor_recipe_for=FACTOR_RECIPE_FOR),
    "paper": dict(base=get_config("medium").with_(
        name="paper", anneal_start=1.0, anneal_end=20.0, anneal_every=100),
        compression=25.0, doping=0.01, cmr_p=0.3, factor_optimizer=dict(optimizer="adam", lr=1.5e-3),
        factor_recipe_for=FACTOR_RECIPE_FOR),
}
# --quick: the same arms on a slice of PTB with hidden sizes divided by QUICK_SHRINK, for CI and
# the notebooks (each experiment < 2 minutes).
QUICK = dict(epochs=2, train_tokens=100_000, eval_tokens=10_000, anneal_start=0.25, anneal_end=1.5,
             anneal_every=5, decay_after=1)
QUICK_SHRINK = 4


def shrunk_hidden(config, compression):
    """Hidden size H' of a dense LSTM whose gate matrices hold about 1/compression of the
    parameters of those of hidden size H (8 H^2 each): H' = H / sqrt(compression)."""
    return max(2, int(round(config.hidden / math.sqrt(compression))))


def arms(name, scale="course"):
    """{arm name: config} of experiment `name` at `scale`."""
    s = SCALES[scale]
    base, c, d, p = s["base"], s["compression"], s["doping"], s["cmr_p"]

    # every kind of arm, before its optimizer: the recipes search tries each under both recipes,
    # the other experiments use each under the recipe the scale gives it
    kinds = {"dense": base, "prune": base.with_(structure="prune", compression=c),
             **{k: base.with_(structure=k, compression=c) for k in ("kp", "lmf", "hmd")},
             "doped-kp": base.with_(structure="kp", compression=c, doping=d),
             **{f"doped-{k}": base.with_(structure=k, compression=c, doping=d, cmr_p=p) for k in ("lmf", "hmd")}}
    arm = {kind: config.with_(**(s["factor_optimizer"] if kind in s["factor_recipe_for"] else {}))
           for kind, config in kinds.items()}
    kp, doped = arm["kp"], arm["doped-kp"]
    families = {
        "kp-loss": {
            "dense": arm["dense"],
            "dense-shrunk": arm["dense"].with_(hidden=shrunk_hidden(base, c)),
            "kp": kp,
        },
        "doping": {
            "kp": kp,
            "doped-kp": doped,
            "doped-kp-cmr": doped.with_(cmr_p=p),
        },
        "cma": {
            "doped-kp": doped,
        },
        "cmr": {
            "doped-kp": doped,
            **{f"output-p{q:g}": doped.with_(cmr_p=q) for q in (0.1, 0.3, 0.5)},
            f"branch-p{p:g}": doped.with_(cmr_p=p, cmr_variant="branch"),
            f"connect-p{p:g}": doped.with_(cmr_p=p, cmr_variant="connect"),
        },
        "methods": {
            "doped-kp": doped.with_(cmr_p=p),
            **{k: arm[k] for k in ("prune", "lmf", "hmd", "doped-lmf", "doped-hmd")},
        },
        # the search behind the recipe rule above: every kind of arm under both recipes (one seed)
        "recipes": {f"{kind}-{recipe_name}": config.with_(**opt) for kind, config in kinds.items()
                    for recipe_name, opt in (("sgd", {"optimizer": base.optimizer, "lr": base.lr}),
                                             ("adam", s["factor_optimizer"]))},
    }
    if name not in families:
        raise ValueError(f"experiment must be one of {sorted(families)}, got {name!r}")
    return families[name]


EXPERIMENTS = ("kp-loss", "doping", "cma", "cmr", "methods", "recipes")


# --- the co-matrix adaptation search (data/results/cma-search/PLAN.md) -----------------------------
SEARCH = ("cma-timing", "cma-density", "cma-init", "cmr-schedule", "cmr-branch", "cma-long")
SEARCH_OUT = os.path.join("data", "results", "cma-search")
# What every run of the search records besides the course's diagnostics: the perplexity of the first
# `tokens` validation tokens every `grid_every` epochs (the same epochs in every arm), the CMA points
# along the anneal on that slice (branch statistics on its first `stats_tokens`), and at the end the
# perplexity of the whole validation split with S off and of the slice with S pruned further to
# each of `prune_fractions` of its entries, and the training loss every `trace_every` steps.
SEARCH_PROBES = dict(tokens=10_000, cma_points=5, grid_every=0.25, stats_tokens=2_000,
                     prune_fractions=(0.5, 0.2, 0.1), trace_every=25)
# the anneal windows (epochs) the search compares, at the course scale's 2 epochs
WINDOWS = {"early-long": (0.1, 1.5), "early-short": (0.25, 0.5), "late-short": (1.5, 1.75),
           "late-short-norec": (1.75, 2.0)}
# --quick search runs probe a 2,000-token slice (the quick validation split has 10,000 tokens)
QUICK_SEARCH_PROBES = dict(SEARCH_PROBES, tokens=2_000, stats_tokens=500)
LONG = dict(train_tokens=0, epochs=3, decay_after=2)  # cma-long: all of PTB's train split, 3 epochs


def search_arms(name, scale="course"):
    """{arm name: config} of the search family `name` (see PLAN.md for what each tests)."""
    s = SCALES[scale]
    course = arms("doping", scale)
    doped = course["doped-kp"]                       # SGD, 1% of S, no CMR, anneal 0.1 -> 1.5
    p = s["cmr_p"]

    def window(config, name):
        a, b = WINDOWS[name]
        return config.with_(anneal_start=a, anneal_end=b)

    late = window(doped, "late-short")
    families = {
        "cma-timing": {**{w: window(doped, w) for w in WINDOWS}, "hold": doped.with_(anneal_s=False)},
        "cma-density": {"late-short": late, "late-short-d0.001": late.with_(doping=0.001),
                        "late-short-d0.0001": late.with_(doping=0.0001)},
        "cma-init": {"early-long": doped, "late-short": late,
                     "residual-early-long": doped.with_(dense_warmup=0.1),
                     "residual-late-short": late.with_(dense_warmup=0.1)},
        "cmr-schedule": {"late-short": late,
                         f"output-p{p:g}": late.with_(cmr_p=p),
                         f"output-p{p:g}-threshold": late.with_(cmr_p=p, cmr_schedule="threshold"),
                         f"output-p{p:g}-density": late.with_(cmr_p=p, cmr_schedule="density"),
                         f"output-p{p:g}-norescale": late.with_(cmr_p=p, cmr_rescale=False)},
        "cmr-branch": {"early-long": doped,
                       f"branch-p{p:g}": doped.with_(cmr_p=p, cmr_variant="branch"),
                       f"branch-p{p:g}-norescale": doped.with_(cmr_p=p, cmr_variant="branch", cmr_rescale=False),
                       f"branch-p{p:g}-threshold": doped.with_(cmr_p=p, cmr_variant="branch",
                                                               cmr_schedule="threshold")},
        "cma-long": {k: v.with_(**LONG) for k, v in {
            "dense": arms("kp-loss", scale)["dense"], "kp": course["kp"],
            "late-short": late.with_(anneal_start=2.5, anneal_end=2.75),
            f"late-short-output-p{p:g}": late.with_(anneal_start=2.5, anneal_end=2.75, cmr_p=p)}.items()},
    }
    return families[name]


def quick(config):
    """The --quick version of an arm: a slice of PTB, hidden sizes divided by QUICK_SHRINK. An arm
    that keeps the course scale's anneal window gets QUICK's; one with a window of its own (the
    search's) keeps it, as fractions of the same two epochs."""
    changes = dict(QUICK)
    course = SCALES["course"]["base"]
    if (config.anneal_start, config.anneal_end) != (course.anneal_start, course.anneal_end):
        del changes["anneal_start"], changes["anneal_end"]
    if config.epochs != course.epochs:  # a longer family stays longer than the quick default
        changes["epochs"], changes["decay_after"] = config.epochs, config.decay_after
    return config.with_(**changes, hidden=max(4, config.hidden // QUICK_SHRINK), name=config.name + "-quick")


QUICK_RESULTS_ENV = "DKP_QUICK_RESULTS"


def quick_results_dir():
    """Where the notebooks write their --quick runs: the directory named by $DKP_QUICK_RESULTS when
    it is set (the test suite sets it, so the unit tests and the notebooks reuse one set of quick
    runs instead of training them twice), else a new temporary directory."""
    import tempfile
    out = os.environ.get(QUICK_RESULTS_ENV)
    if out:
        os.makedirs(out, exist_ok=True)
        return out
    return tempfile.mkdtemp(prefix="dkp-quick-")


# --- running -------------------------------------------------------------------------------------
COURSE_PROBES = dict(tokens=20_000, cma_points=6)   # what the course's experiments record


def run_one(config_dict, seed, probes=None):
    """Train one arm for one seed (in a worker process) and return its record. Doped arms record
    the CMA diagnostics along the anneal and at the end, whatever the experiment, so that a run can
    serve every experiment that has the same arm. `probes` (default COURSE_PROBES; the search
    passes SEARCH_PROBES) says what else is recorded."""
    from .data import load_corpus
    from .doping import CMATracker, PerplexityProbe, cma_point, perplexity, perplexity_s_pruned
    from .train import Trainer, TrainingDiverged
    probes = {**COURSE_PROBES, **(probes or {})}
    config = Config.from_dict(config_dict)
    corpus = load_corpus(level=config.level)
    trainer = Trainer(config, seed=seed, corpus=corpus, progress=False)
    diag_ids = trainer.valid_ids[:probes["tokens"]]
    stats_tokens = probes.get("stats_tokens")
    track_cma = config.doping > 0
    if track_cma:
        trainer.hooks.append(CMATracker(trainer.annealer, diag_ids, points=probes["cma_points"], batch=10,
                                        bptt=config.bptt, stats_tokens=stats_tokens))
    grid = PerplexityProbe(diag_ids, probes["grid_every"], 10, config.bptt) if probes.get("grid_every") else None
    if grid:
        trainer.hooks.append(grid)
    if probes.get("trace_every"):
        trainer.hooks.append(LossTrace(probes["trace_every"]))
    t0 = time.perf_counter()
    try:
        metrics = trainer.run()
    except TrainingDiverged as e:  # a diverged run is a result too: recorded, with where it happened
        from .train import layer_report
        return {"seed": seed, "diverged": str(e), "seconds": time.perf_counter() - t0,
                "layers": layer_report(trainer.model), **trainer.history}
    record = {k: metrics[k] for k in ("seed", "epochs", "train_ppl", "valid_ppl", "final_valid_ppl", "test_ppl",
                                      "words_per_sec", "layers")}
    record["density"] = metrics.get("density")
    if grid:
        grid.record(trainer)["final"] = True  # the end of training, appended to trainer.history["probes"]
    for key in ("probes", "loss_trace"):
        if key in trainer.history:
            record[key] = trainer.history[key]
    if track_cma:
        end = cma_point(trainer.model, diag_ids, 10, config.bptt, stats_tokens)
        record["cma"] = metrics.get("cma", []) + [{"step": trainer.step, "epoch": trainer.epoch, "final": True,
                                                    "density": metrics["layers"][0].get("density_of_S"), **end}]
        if probes.get("prune_fractions"):
            record["final_valid_ppl_s_off"] = perplexity(trainer.model, trainer.valid_ids, config.eval_batch,
                                                         config.bptt, s_enabled=False)
            record["s_pruned"] = {f"{f:g}": perplexity_s_pruned(trainer.model, diag_ids, 10, config.bptt, f)
                                  for f in probes["prune_fractions"]}
    record["seconds"] = time.perf_counter() - t0
    return record


class LossTrace:
    """A hook that records the mean training loss (nats per token) of every `every` steps into
    trainer.history["loss_trace"] as [step, loss] pairs: where a run goes wrong, to the window."""

    def __init__(self, every):
        self.every, self.total, self.count = int(every), 0.0, 0

    def __call__(self, trainer, step):
        loss = trainer.last_loss
        if loss is None or step == 0:
            return
        self.total, self.count = self.total + loss, self.count + 1
        if self.count == self.every:
            trainer.history.setdefault("loss_trace", []).append([step, self.total / self.count])
            self.total, self.count = 0.0, 0


def mean_sd(values):
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def summarize(runs):
    """Mean, sample sd and count over the runs that trained to the end (a diverged run is counted
    in "diverged", not in the means)."""
    done = [r for r in runs if not r.get("diverged")]
    out = {key: mean_sd([r[key] for r in done]) for key in ("final_valid_ppl", "test_ppl") if done}
    cma = [r["cma"][-1] for r in done if r.get("cma")]
    if cma:
        out["final_ppl_s_off"] = mean_sd([c["ppl_s_off"] for c in cma])
    if any(r.get("diverged") for r in runs):
        out["diverged"] = sorted(r["seed"] for r in runs if r.get("diverged"))
    return out


def lstm_size(layers, reference_hidden):
    """Parameters and bytes of the LSTM gate matrices, and their compression against the dense gate
    matrices (4H x 2H each) of the experiment's reference hidden size H, so that a shrunk dense
    LSTM counts as compressed too."""
    n_params = int(sum(r["n_params"] for r in layers))
    H = reference_hidden
    return {"n_params": n_params, "n_bytes": int(sum(r["n_bytes"] for r in layers)),
            "compression": float(len(layers) * 8 * H * H / n_params)}


def experiment_arms(name, scale="course"):
    """{arm name: config} of any named experiment, the course's or the search's."""
    if name in SEARCH:
        return search_arms(name, scale)
    if name in EXPERIMENTS:
        return arms(name, scale)
    raise ValueError(f"experiment must be one of {list(EXPERIMENTS + SEARCH)}, got {name!r}")


def default_out(name):
    """Where `experiment NAME` writes by default: data/results, or data/results/cma-search."""
    return SEARCH_OUT if name in SEARCH else os.path.join("data", "results")


def run_experiment(name, seeds=3, quick_mode=False, scale="course", out=None, jobs=1, progress=True,
                   only=None):
    """Run every arm of `name` for seeds 0..seeds-1 and write OUT/NAME.json (or NAME-quick.json).
    `jobs` runs train in parallel worker processes (0: one per core of this machine)."""
    if seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    if jobs < 0:
        raise ValueError(f"jobs must be >= 0 (0: one per core), got {jobs}")
    jobs = jobs or os.cpu_count() or 1
    out = out or default_out(name)
    configs = experiment_arms(name, scale)
    probes = (QUICK_SEARCH_PROBES if quick_mode else SEARCH_PROBES) if name in SEARCH else None
    if only:
        unknown = set(only) - set(configs)
        if unknown:
            raise ValueError(f"unknown arm(s) {sorted(unknown)} of {name}; arms: {sorted(configs)}")
        configs = {k: v for k, v in configs.items() if k in only}
    if quick_mode:
        configs = {k: quick(v) for k, v in configs.items()}
    reference_hidden = quick(SCALES[scale]["base"]).hidden if quick_mode else SCALES[scale]["base"].hidden
    path = os.path.join(out, f"{name}{'-quick' if quick_mode else ''}.json")
    result = _load_previous(path, name, scale, quick_mode)
    result.update(io.provenance())
    for arm, config in configs.items():
        entry = result["arms"].setdefault(arm, {"config": config.to_dict(), "runs": []})
        if entry["config"] != config.to_dict():  # a changed arm starts over
            result["arms"][arm] = entry = {"config": config.to_dict(), "runs": []}
    shared = _finished_elsewhere(out, path, quick_mode, SEARCH if name in SEARCH else EXPERIMENTS)
    for arm, config in configs.items():
        have = {r["seed"] for r in result["arms"][arm]["runs"]}
        for seed in range(seeds):
            record = shared.get((_key(config.to_dict()), seed))
            if seed not in have and record is not None:  # the same arm and seed, run by another experiment
                result["arms"][arm]["runs"].append(record)
    todo = [(arm, seed) for arm in configs for seed in range(seeds)
            if seed not in {r["seed"] for r in result["arms"][arm]["runs"]}]
    t0 = time.perf_counter()
    for arm in configs:
        if result["arms"][arm]["runs"]:
            _refresh(result["arms"][arm], reference_hidden)

    def store(arm, record):
        entry = result["arms"][arm]
        entry["runs"].append(record)
        _refresh(entry, reference_hidden)
        io.save_json(path, result)
        if progress and record.get("diverged"):
            print(f"[{time.perf_counter() - t0:6.0f}s] {name}/{arm} seed {record['seed']}: {record['diverged']}",
                  flush=True)
        elif progress:
            s = entry["summary"]["final_valid_ppl"]
            print(f"[{time.perf_counter() - t0:6.0f}s] {name}/{arm} seed {record['seed']}: valid "
                  f"{record['final_valid_ppl']:.2f} test {record['test_ppl']:.2f}  (arm so far: "
                  f"{s['mean']:.2f} +- {s['std']:.2f}, n={s['n']})", flush=True)

    if jobs > 1 and len(todo) > 1:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread a worker
        import multiprocessing as mp
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(run_one, configs[arm].to_dict(), seed, probes): arm for arm, seed in todo}
            for f in as_completed(futures):
                store(futures[f], f.result())
    else:
        for arm, seed in todo:
            store(arm, run_one(configs[arm].to_dict(), seed, probes))
    result["wall_seconds"] = result.get("wall_seconds", 0.0) + (time.perf_counter() - t0)
    io.save_json(path, result)
    return result


def _refresh(entry, reference_hidden):
    entry["runs"].sort(key=lambda r: r["seed"])
    entry["seeds"] = [r["seed"] for r in entry["runs"]]
    entry.update(lstm_size(entry["runs"][0]["layers"], reference_hidden), summary=summarize(entry["runs"]))


def _key(config_dict):
    return tuple(sorted((k, v) for k, v in config_dict.items() if k != "name"))


def _finished_elsewhere(out, path, quick_mode, names):
    """{(config key, seed): run record} from the JSON of the other experiments `names` in `out`
    (same quick mode; the course's and the search's runs record different probes, so each group
    shares only within itself)."""
    found = {}
    for name in names:
        other = os.path.join(out, f"{name}{'-quick' if quick_mode else ''}.json")
        if other == path or not os.path.exists(other):
            continue
        try:
            data = io.load_json(other)
        except ValueError:
            continue
        for entry in data.get("arms", {}).values():
            for run in entry.get("runs", []):
                found.setdefault((_key(entry["config"]), run["seed"]), run)
    return found


def _load_previous(path, name, scale, quick_mode):
    if os.path.exists(path):
        try:
            prev = io.load_json(path)
        except ValueError as e:
            raise ValueError(f"results file {path!r} is not valid JSON ({e}); move it away to start over") from None
        if prev.get("experiment") == name and prev.get("scale") == scale and prev.get("quick") == quick_mode:
            return prev
    return {"experiment": name, "scale": scale, "quick": quick_mode, "arms": {}}
