"""What the notebooks share, written once: the repository's folders, the wall time of a results file,
the verdicts of a study shown as the report prints them, the sizes an arm trains to (its model
after the anneal), one line describing a gate matrix, the short demo trainings a notebook and
the test of its claims both need, and the full experiments a notebook runs with FULL = True."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dkp.compression.anneal import Annealer, needs_annealing
from dkp.core import io
from dkp.core.weights import Doped, Hybrid, Kronecker, LowRank, Pruned
from dkp.study.catalog import lstm_size
from dkp.study.runner import QUICK_RESULTS_ENV, run_dir
from dkp.training.checkpoint import CHECKPOINT
from dkp.training.evaluate import layer_report
from dkp.training.loop import METRICS, Trainer, build_model


def repo_root(start=None):
    """The repository root: the first folder upwards from `start` (default: the working directory)
    that holds pyproject.toml."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    raise FileNotFoundError(f"no pyproject.toml in {here} or above it: run the notebooks from inside the "
                            f"dkp repository")


def results_dir(start=None):
    """data/results of the repository: the committed experiment results."""
    return repo_root(start) / "data" / "results"


def wall_time(result):
    """The wall time a results file records (its calls', up to the last run that landed), as text."""
    if "wall_seconds" in result:
        return f"{result['wall_seconds'] / 60:.0f} min of wall time"
    return "no wall time recorded yet"


def show_verdicts(study, directory, ids=None, rec=None):
    """Show the verdicts `ids` (default: all) of `study` on the records in `directory` exactly as
    `python -m dkp report` and the READMEs print them (the study pipeline's one printer), as
    Markdown in a notebook and as text elsewhere. Returns {id: Verdict} of every hypothesis, for the
    check cells to read."""
    from dkp.study.engine import verdict_line
    from dkp.study.report import verdicts
    found = {v.id: v for v in verdicts(study, directory, rec=rec)}
    lines = [verdict_line(found[i], found) for i in (ids or list(found))]
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
        if get_ipython() is not None:
            display(Markdown("\n".join(lines)))
            return found
    except ImportError:
        pass
    print("\n".join(lines))
    return found


def runs_text(result):
    """What the experiment call that returned `result` did, as a notebook says it: how many runs it
    trained now and how many it reused (already in the results file, or trained by another family)."""
    call = result.get("last_call")
    if call is None:
        return "loaded from the committed file (trained earlier; its header says when and how)"
    return (f"{call['trained']} run(s) trained now, {call['reused']} reused from earlier runs of the same "
            f"arms and seeds, in {call['seconds']:.0f} s")


def demo_training(config, seed=0, corpus=None):
    """(trainer, metrics, source) of `config` trained from `seed`, for a notebook's short demo and
    the test that checks its claims. Inside a test session ($DKP_QUICK_RESULTS set, as for the
    --quick experiments) the first to ask trains it and keeps its checkpoint and metrics there
    (where a --quick experiment run with keep_models keeps the same run); the next one loads them
    (training is deterministic, so it gets the same model) instead of training it again. Elsewhere
    it always trains. `source` says which happened."""
    shared = os.environ.get(QUICK_RESULTS_ENV)
    if not shared:
        trainer = Trainer(config, seed=seed, corpus=corpus, progress=False)
        return trainer, trainer.run(), "trained live"
    out = Path(run_dir(shared, config, seed))
    trainer = Trainer(config, seed=seed, out=str(out), corpus=corpus, progress=False)
    if (out / METRICS).is_file():
        trainer.load(str(out / CHECKPOINT))
        return trainer, io.load_json(out / METRICS), "trained earlier in this test session (same config, seed), loaded"
    return trainer, trainer.run(), "trained live"


def annealed_model(config, vocab_size, seed=0):
    """A fresh model of `config` as its anneal leaves it (S or the pruning mask at its final
    density): the size the arm trains to. Models without an anneal are returned as built."""
    model = build_model(config, vocab_size, seed=seed)
    if needs_annealing(config):
        annealer = Annealer(config, steps_per_epoch=100)   # any step count: only the end matters
        annealer.apply(model, annealer.end)
    return model


def arm_sizes(arms, vocab_size, reference_hidden, seed=0):
    """{arm: {"config", "W" (layer 0's gate matrix), "total" (all parameters), "n_params",
    "n_bytes", "compression"}}: each arm's LSTM after its anneal, its compression counted against
    dense gate matrices of `reference_hidden` units."""
    rows = {}
    for arm, config in arms.items():
        model = annealed_model(config, vocab_size, seed)
        rows[arm] = {"config": config, "W": model.layers[0].W,
                     "total": sum(p.size for p in model.params.values()),
                     **lstm_size(layer_report(model), reference_hidden)}
    return rows


def structure_text(W):
    """One line for a gate matrix: its factor shapes, rank, dense rows or kept share, plus S."""
    inner = W.structured if isinstance(W, Doped) else W
    if isinstance(inner, Kronecker):
        (m1, n1), (m2, n2) = inner.factors
        text = f"A {m1}x{n1} ⊗ B {m2}x{n2}"
    elif isinstance(inner, Hybrid):
        text = f"{inner.n_dense_rows} dense rows + rank {inner.rank}"
    elif isinstance(inner, LowRank):
        text = f"rank {inner.rank}"
    elif isinstance(inner, Pruned):
        text = f"{1 - inner.sparsity:.1%} of entries kept"
    else:
        text = "dense"
    return text + (f" + S ({W.nnz:,})" if isinstance(W, Doped) else "")


def run_in_repo(*args, blas_threads=1):
    """Run `python ARGS` from the repository root (an experiment or a benchmark, for a notebook's
    FULL = True), printing its output as it comes. `blas_threads` BLAS threads per process (one by
    default: an experiment's workers share the cores); None leaves them to the command (a benchmark
    that sweeps them). Raises if it fails."""
    print("running: python", " ".join(args), flush=True)
    env = dict(os.environ)
    if blas_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    with subprocess.Popen([sys.executable, *args], cwd=repo_root(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
    if proc.returncode:
        raise RuntimeError(f"python {' '.join(args)} failed (exit code {proc.returncode})")
