"""Running the named experiments (`dkp.study.catalog`): every arm over several seeds, each run's
metrics and diagnostics written to one JSON per experiment.

    python -m dkp experiment NAME [--seeds N] [--quick] [--scale course|paper] [--out DIR]
                                  [--jobs J | --scheduler local|tcp://HOST:8786]

`DIR/NAME.json` is rewritten atomically after every finished run, so an interrupted experiment
keeps what it finished; rerunning it skips the runs already there (same config and seed). The
runs go to this process, a pool of processes or a Dask cluster (`dkp.study.executors`).
"""
from __future__ import annotations

import hashlib
import os
import time
from contextlib import nullcontext

from dkp.compression.quantize import quantize_model, quantized_bytes
from dkp.core import io
from dkp.core.data import load_corpus
from dkp.study import executors, teachers
from dkp.study.catalog import (QUICK_WHOLE_TOKENS, SCALES, SEARCH, TEACHER_OF, TRANSFORMER, WHOLE, default_out,
                                experiment_arms, group, lstm_size, planned_seeds, quick, quick_transformer,
                                size_against_teacher)
from dkp.study.probes import (CMATracker, LossTrace, PerplexityProbe, SwitchProbe, cma_point, perplexity,
                                    perplexity_s_pruned)
from dkp.study.records import mean_sd, run_key
from dkp.training.configs import Config, normalized
from dkp.training.evaluate import evaluate, layer_report
from dkp.training.loop import Trainer, TrainingDiverged

# What every run of the search records besides the course's diagnostics: the perplexity of the first
# `tokens` validation tokens every `grid_every` epochs (the same epochs in every arm), the CMA points
# along the anneal on that slice (branch statistics on its first `stats_tokens`), and at the end the
# perplexity of the whole validation split with S off and of the slice with S pruned further to
# each of `prune_fractions` of its entries, and the training loss every `trace_every` steps.
SEARCH_PROBES = dict(tokens=10_000, cma_points=5, grid_every=0.25, stats_tokens=2_000,
                     prune_fractions=(0.5, 0.2, 0.1), trace_every=25)
# --quick search runs probe a 2,000-token slice (the quick validation split has 10,000 tokens)
QUICK_SEARCH_PROBES = dict(SEARCH_PROBES, tokens=2_000, stats_tokens=500)


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
# --quick runs evaluate on 10,000 tokens: their probes take a slice of half that, and the branch
# statistics its first 1,000 tokens (a third of a quick doped run's time went to probes otherwise)
QUICK_COURSE_PROBES = dict(COURSE_PROBES, tokens=5_000, stats_tokens=1_000)


def run_dir(out, config, seed):
    """Where a run's trained model is kept (checkpoint.npz and metrics.json, as `train` writes
    them): OUT/models/NAME-KEY-seedS, KEY a hash of the config as `run_key` sees it (what makes two
    experiments' arms the same run)."""
    key = hashlib.sha1(repr(run_key(config.to_dict())).encode()).hexdigest()[:12]
    return os.path.join(out, "models", f"{config.name}-{key}-seed{seed}")


def run_one(config_dict, seed, probes=None, label=None, keep=None, teacher_root=teachers.ROOT):
    """Train one arm for one seed (in a worker process) and return its record. Doped arms record
    the CMA diagnostics along the anneal and at the end, whatever the experiment, so that a run can
    serve every experiment that has the same arm. `probes` (default COURSE_PROBES; the search
    passes SEARCH_PROBES) says what else is recorded. With a `label`, each epoch prints a line
    starting with it (on a Dask worker, in the terminal of the client that asked for the run). With
    `keep` (a directory), the trained model is kept in run_dir(keep, config, seed). A config whose
    teacher is "@NAME" starts from the teacher of config NAME for this seed, trained once
    (`dkp.study.teachers`) and kept under `teacher_root`."""
    probes = {**COURSE_PROBES, **(probes or {})}
    config = Config.from_dict(config_dict)
    corpus = load_corpus(level=config.level)
    config = teachers.resolve(config, seed, root=teacher_root, corpus=corpus, echo=None if label is None else _labelled_echo(label))
    trainer = Trainer(config, seed=seed, corpus=corpus, progress=False,
                      out=None if keep is None else run_dir(keep, config, seed),
                      echo=None if label is None else _labelled_echo(label))
    diag_ids = trainer.valid_ids[:probes["tokens"]]
    stats_tokens = probes.get("stats_tokens")
    track_cma = config.doping > 0
    if track_cma:
        trainer.hooks.append(CMATracker(trainer.annealer, diag_ids, points=probes["cma_points"],
                                        batch=10, bptt=config.bptt, stats_tokens=stats_tokens))
    warmup = trainer.warmup
    if warmup is not None:  # the dense model's perplexity at the switch, and the compressed model's
        trainer.before_changes.append(SwitchProbe(warmup.step, "before", trainer.valid_ids, config.eval_batch,
                                                  config.bptt))
        trainer.hooks.insert(0, SwitchProbe(warmup.step, "after", trainer.valid_ids, config.eval_batch, config.bptt))
    grid = PerplexityProbe(diag_ids, probes["grid_every"], 10, config.bptt) if probes.get("grid_every") else None
    if grid:
        trainer.hooks.append(grid)
    if probes.get("trace_every"):
        trainer.hooks.append(LossTrace(probes["trace_every"]))
    t0 = time.perf_counter()
    try:
        metrics = trainer.run()
    except TrainingDiverged as e:  # a diverged run is a result too: recorded, with where it happened
        return {"seed": seed, "diverged": str(e), "seconds": time.perf_counter() - t0,
                "layers": layer_report(trainer.model), **trainer.history}
    record = {k: metrics[k] for k in ("seed", "epochs", "train_ppl", "valid_ppl", "final_valid_ppl", "test_ppl",
                                      "words_per_sec", "layers")}
    record["density"] = metrics.get("density")
    record["model"] = metrics["model"]
    if "switch" in trainer.history:
        record["switch"] = trainer.history["switch"]
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
    if probes.get("quantize_bits"):  # the same model stored with int8 parameters, after training
        bits = probes["quantize_bits"]
        q = quantize_model(trainer.model, bits)
        record["quantized"] = {"bits": bits, "n_bytes": quantized_bytes(trainer.model),
                               "final_valid_ppl": evaluate(q, trainer.valid_ids, config.eval_batch, config.bptt),
                               "test_ppl": evaluate(q, trainer.test_ids, config.eval_batch, config.bptt)}
    record["seconds"] = time.perf_counter() - t0
    return record


def _labelled_echo(label):
    """print(label: line); on a Dask worker the line goes to the client that asked for the run
    (Dask's "print" event, what `distributed.print` sends, without also printing on the worker)."""
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return lambda line: print(f"{label}: {line}", flush=True)
    return lambda line: worker.log_event("print", {"args": (f"{label}: {line}",), "file": 1, "flush": True})


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


class RunsFailed(RuntimeError):
    """Some runs of an experiment failed (raised, or lost their worker); the others were saved."""


def run_experiment(name, seeds=None, quick_mode=False, scale="course", out=None, jobs=1, progress=True,
                   only=None, scheduler=None, executor=None, keep_models=False, teacher_root=None):
    """Run every arm of `name` for seeds 0..seeds-1 (default: as many as its plan asks,
    `catalog.planned_seeds`) and write OUT/NAME.json (or NAME-quick.json).

    Where the runs execute (`dkp.study.executors`): `executor`, anything with `submit(fn, *args)`
    returning a concurrent.futures.Future, if given; else a Dask cluster if `scheduler` is given
    ("local", or the address of a running scheduler); else `jobs` worker processes on this machine
    (0: one per core; 1: this process). Each finished run is written to the JSON the moment it
    returns; a run that fails is reported with its arm and seed, the others go on, and RunsFailed is
    raised at the end. Rerunning the same command runs only what is missing. With `keep_models`,
    each run's trained model is kept under OUT/models/ (`run_dir`). The record also says what the
    last call did, `last_call`: runs trained now, runs reused (already in the file or another
    family's), and its seconds. Teachers ("@NAME") are kept under `teacher_root` (default: runs/teachers
    under the working directory; OUT/teachers for --quick runs)."""
    if seeds is None:
        seeds = planned_seeds(name)
    if seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    if name in TRANSFORMER and scale != "course":
        raise ValueError(f"scale {scale!r} does not apply to {name}: the transformer study's plan fixes its one scale "
                         f"(data/results/transformer/PLAN.md); leave --scale out")
    if jobs < 0:
        raise ValueError(f"jobs must be >= 0 (0: one per core), got {jobs}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise ValueError(f"executor must have a submit(fn, *args) method returning a future, got {executor!r}")
    jobs = jobs or os.cpu_count() or 1
    out = out or default_out(name)
    configs = experiment_arms(name, scale)
    if name in SEARCH or name == "transformer-cma":      # the search's probes (M1-M6)
        probes = QUICK_SEARCH_PROBES if quick_mode else SEARCH_PROBES
    else:
        probes = QUICK_COURSE_PROBES if quick_mode else None
    if name in WHOLE or name in TRANSFORMER:   # their tables have an int8 column
        probes = {**(probes or {}), "quantize_bits": 8}
    if only:
        unknown = set(only) - set(configs)
        if unknown:
            raise ValueError(f"unknown arm(s) {sorted(unknown)} of {name}; arms: {sorted(configs)}")
        configs = {k: v for k, v in configs.items() if k in only}
    if quick_mode and name in TRANSFORMER:
        configs = {k: quick_transformer(v) for k, v in configs.items()}
    elif quick_mode:
        configs = {k: quick(v) for k, v in configs.items()}
        if name in WHOLE:
            configs = {k: v.with_(train_tokens=QUICK_WHOLE_TOKENS) for k, v in configs.items()}
    reference_hidden, size = _sizing(name, quick_mode, scale)
    teacher_root = teacher_root or _teacher_root(out, quick_mode)

    def refresh(arm):
        _refresh(result["arms"][arm], reference_hidden, size)
    path = _record_path(out, name, quick_mode)
    result = _load_previous(path, name, scale, quick_mode)
    result.update(io.provenance())
    for arm, config in configs.items():
        entry = result["arms"].get(arm)
        if entry is None or normalized(entry["config"]) != config.to_dict():  # a new or changed arm starts over
            result["arms"][arm] = entry = {"runs": []}
        entry["config"] = config.to_dict()   # stored in this code's terms
    shared = _finished_elsewhere(out, path, quick_mode, group(name))
    for arm, config in configs.items():
        have = {r["seed"] for r in result["arms"][arm]["runs"]}
        for seed in range(seeds):
            record = shared.get((run_key(config.to_dict()), seed))
            if seed not in have and record is not None:  # the same arm and seed, run by another experiment
                result["arms"][arm]["runs"].append(record)
    todo = [(arm, seed) for arm in configs for seed in range(seeds)
            if seed not in {r["seed"] for r in result["arms"][arm]["runs"]}]
    t0 = time.perf_counter()
    wall_before = result.get("wall_seconds", 0.0)   # earlier calls', kept up to date as runs land

    def wall():
        return wall_before + (time.perf_counter() - t0)
    for arm in configs:
        if result["arms"][arm]["runs"]:
            refresh(arm)
    bar = _runs_bar(name, len(todo)) if progress and todo else None
    say = bar.write if bar is not None else print

    def tell(arm, seed, text):   # one line per landed run: elapsed, which run, what became of it
        if progress:
            say(f"[{time.perf_counter() - t0:6.0f}s] {name}/{arm} seed {seed}: {text}")

    def store(arm, record):
        entry = result["arms"][arm]
        entry["runs"].append(record)
        refresh(arm)
        result["wall_seconds"] = wall()      # so that a call stopped midway still counts its time
        io.save_json(path, result)
        if record.get("diverged"):
            tell(arm, record["seed"], record["diverged"])
        else:
            s = entry["summary"]["final_valid_ppl"]
            tell(arm, record["seed"], f"valid {record['final_valid_ppl']:.2f} test {record['test_ppl']:.2f}  "
                                      f"(arm so far: {s['mean']:.2f} +- {s['std']:.2f}, n={s['n']})")

    failed = []
    calls = {(arm, seed): (run_one, (configs[arm].to_dict(), seed, probes,
                                     f"{name}/{arm} seed {seed}" if progress else None, out if keep_models else None,
                                     teacher_root))
             for arm, seed in todo}
    with (nullcontext(executor) if executor is not None
          else executors.executor(jobs if len(todo) > 1 else 1, scheduler if todo else None, echo=say)) as pool:
        try:
            for (arm, seed), record, error in executors.run_all(calls, pool):
                if error is None:
                    store(arm, record)
                else:
                    failed.append((arm, seed, error))
                    tell(arm, seed, f"FAILED ({type(error).__name__}: {error})")
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    result["wall_seconds"] = wall()
    _record_teachers(result, teacher_root)
    # what this call did, for a notebook to say: runs trained now, runs reused, its seconds
    asked = sum(1 for arm in configs for seed in range(seeds))
    result["last_call"] = {"trained": len(todo) - len(failed), "reused": asked - len(todo),
                           "seconds": time.perf_counter() - t0}
    io.save_json(path, result)
    if failed:
        runs = "; ".join(f"{arm} seed {seed} ({type(e).__name__}: {e})" for arm, seed, e in failed)
        raise RunsFailed(f"{len(failed)} of {len(todo)} run(s) of {name} failed: {runs}. The {len(todo) - len(failed)} "
                         f"that finished are in {path}; run the same command again to run only what is "
                         f"missing") from failed[0][2]
    return result


def refresh_record(name, out=None, quick_mode=False, scale="course", teacher_root=None):
    """Recompute, with this code, what a family's record derives from its runs (each arm's size and
    summary, its teachers' records) and write it back, training nothing; the runs, their command and
    commit stay as they were, and `refreshed` says which commit derived the rest. Returns the record."""
    out = out or default_out(name)
    path = _record_path(out, name, quick_mode)
    if not os.path.exists(path):
        raise ValueError(f"no record of {name} at {path!r} to refresh")
    result = _load_previous(path, name, scale, quick_mode)
    reference_hidden, size = _sizing(name, quick_mode, scale)
    for entry in result["arms"].values():
        if entry.get("runs"):
            _refresh(entry, reference_hidden, size)
    _record_teachers(result, teacher_root or _teacher_root(out, quick_mode))
    result["refreshed"] = {"commit": io.provenance().get("commit"), "what": "each arm's size and summary, the teachers"}
    io.save_json(path, result)
    return result


def _record_path(out, name, quick_mode):
    """OUT/NAME.json, or OUT/NAME-quick.json for --quick runs: a family's record."""
    return os.path.join(out, f"{name}{'-quick' if quick_mode else ''}.json")


def _teacher_root(out, quick_mode):
    """Where a family's teachers are kept unless told: the --quick runs' shrunk ones beside their
    results, the study's under runs/teachers."""
    return os.path.join(out, "teachers") if quick_mode else teachers.ROOT


def _sizing(name, quick_mode, scale):
    """(the hidden size an LSTM arm's gate matrices are counted against, the family's size function
    against its teacher or None) of family `name`: what `_refresh` needs."""
    reference_hidden = quick(SCALES[scale]["base"]).hidden if quick_mode else SCALES[scale]["base"].hidden
    return reference_hidden, size_against_teacher(name, quick_mode) if name in TEACHER_OF else None


def _record_teachers(result, root):
    """result["teachers"]: {NAME-seedS: what the teacher's run recorded} of every finished teacher its
    arms name ("@NAME") for the seeds they ran, from `root` (kept beside any recorded before)."""
    found = result.setdefault("teachers", {})
    for entry in result["arms"].values():
        name = entry["config"].get("teacher", "")
        if name.startswith(teachers.PREFIX):
            for run in entry["runs"]:
                info = teachers.summary(name[len(teachers.PREFIX):], run["seed"], root)
                if info is not None:
                    found[f"{info['config']}-seed{info['seed']}"] = info
    if not found:
        del result["teachers"]


def _runs_bar(name, total):
    """A progress bar over an experiment's runs: done / total, elapsed, an estimate of the rest."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=name, unit="run", dynamic_ncols=True, smoothing=0)


def _refresh(entry, reference_hidden, size=None):
    """An arm's entry after a run landed: its runs in seed order, its size (`size(run)` of its first
    run, else the LSTM gate matrices' against `reference_hidden`) and its summary."""
    entry["runs"].sort(key=lambda r: r["seed"])
    entry["seeds"] = [r["seed"] for r in entry["runs"]]
    first = next((r for r in entry["runs"] if r.get("model")), entry["runs"][0])   # a diverged run has no model
    measured = size(first) if size is not None and first.get("model") else lstm_size(first["layers"], reference_hidden)
    entry.update(measured, summary=summarize(entry["runs"]))


def _finished_elsewhere(out, path, quick_mode, names):
    """{(config key, seed): run record} from the JSON of the other experiments `names` in `out`
    (same quick mode; the course's and the search's runs record different probes, so each group
    shares only within itself)."""
    found = {}
    for name in names:
        other = _record_path(out, name, quick_mode)
        if other == path or not os.path.exists(other):
            continue
        try:
            data = io.load_json(other)
        except ValueError:
            continue
        for entry in data.get("arms", {}).values():
            for run in entry.get("runs", []):
                found.setdefault((run_key(entry["config"]), run["seed"]), run)
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
