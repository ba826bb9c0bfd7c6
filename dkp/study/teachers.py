"""Converged teachers, trained once.

A teacher is a dense model trained by its config's full recipe from its seed (`python -m dkp train
--config NAME --seed S`), kept as a checkpoint and reused by every student of that seed: it is never
retrained per arm. An arm names its teacher as "@NAME" in its config's `teacher` field; the run
resolves it (`resolve`) to the checkpoint of NAME for the run's seed under `root` (runs/teachers by
default), training it there first when no finished one is there (resuming a run that stopped).

Two processes that need the same missing teacher (two workers of a pool or of a Dask cluster that
share the folder) train it once: the first takes a lock file, created exclusively; the others wait
until the teacher is finished, or until the lock is stale: its process is gone from this machine, or
(on another machine, or after a restart) neither the lock nor the teacher's checkpoint has changed
for STALE_SECONDS; then one of them takes over, resuming from the last checkpoint. Workers that do not share the folder each keep
their own teachers, trained from the same seed: the same model, bit for bit where their BLAS rounds
alike (one thread each; another processor's kernels may round float32 products differently).
"""
from __future__ import annotations

import json
import os
import socket
import time

from dkp.core import io
from dkp.study.catalog import quick_teacher
from dkp.study.transformer_catalog import QUICK_SUFFIX
from dkp.training.checkpoint import CHECKPOINT
from dkp.training.loop import train

ROOT = os.path.join("runs", "teachers")
PREFIX = "@"                       # config.teacher = "@NAME": the teacher of config NAME for the run's seed
POLL_SECONDS = 10.0
STALE_SECONDS = 2 * 3600.0          # no new checkpoint for this long: the lock's holder is gone


def teacher_dir(name, seed, root=ROOT):
    return os.path.join(root, f"{name}-seed{int(seed)}")


def finished(folder, config):
    """Whether `folder` holds a teacher that has trained every epoch of `config`'s recipe."""
    metrics = os.path.join(folder, "metrics.json")
    if not (os.path.isfile(metrics) and os.path.isfile(os.path.join(folder, CHECKPOINT))):
        return False
    try:
        done = io.load_json(metrics)
    except (OSError, ValueError):
        return False
    return len(done.get("valid_ppl", [])) == config.epochs and "final_valid_ppl" in done


def _holder_gone(lock, checkpoint):
    """Whether the holder of the lock file is gone: its process has ended on this machine, or
    nothing (the lock, the teacher's checkpoint) has changed for STALE_SECONDS."""
    try:
        with open(lock) as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return False                               # being written: not gone
    changed = max(os.path.getmtime(p) for p in (lock, checkpoint) if os.path.exists(p))
    if time.time() - changed > STALE_SECONDS:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError):
        return False
    return False


def ensure_teacher(name, seed, root=ROOT, corpus=None, echo=None):
    """The checkpoint path of the teacher of config `name` for `seed` under `root`, trained first when
    no finished one is there (see the module docstring)."""
    config = quick_teacher(name)      # NAME, or NAME-quick: the --quick runs' shrunk teacher
    if config.structure != "dense" or config.vocab_structure != "dense" or config.teacher or config.dense_warmup:
        raise ValueError(f"a teacher is a dense model trained by its config's full recipe; config {name!r} "
                         f"compresses")
    folder = teacher_dir(name, seed, root)
    path = os.path.join(folder, CHECKPOINT)
    lock = folder + ".lock"
    while not finished(folder, config):
        os.makedirs(root, exist_ok=True)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _holder_gone(lock, path):
                os.remove(lock)
            else:
                time.sleep(POLL_SECONDS)
            continue
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f)
            if echo is not None:
                echo(f"training the teacher {name} for seed {seed} in {folder}")
            train(config, seed=seed, out=folder, resume=os.path.isfile(path), corpus=corpus, progress=False,
                  command=command(name, seed, root))
        finally:
            os.remove(lock)
    return path


def command(name, seed, root=ROOT):
    """The command line that trains the teacher of `name` for `seed` into its folder under `root`, as
    `ensure_teacher` does (the same config, seed and folder): `python -m dkp train` for a named
    config; for a --quick teacher, whose shrunk config has no name on the command line, a call of
    `ensure_teacher` itself."""
    if name.endswith(QUICK_SUFFIX):
        return (f"python -c 'from dkp.study import teachers; teachers.ensure_teacher({name!r}, {int(seed)}, "
                f"root={root!r})'")
    return f"python -m dkp train --config {name} --seed {int(seed)} --out {teacher_dir(name, seed, root)}"


def summary(name, seed, root=ROOT):
    """What a finished teacher's run recorded (its metrics.json): perplexities (validation and
    training, by epoch), epochs, minutes of training, the commit that trained it, and the command
    that trains it again (not the argv of the process that happened to train it: a worker's, or an
    experiment's, which may name folders of its machine); None while it is missing or unfinished."""
    folder = teacher_dir(name, seed, root)
    if not finished(folder, quick_teacher(name)):
        return None
    m = io.load_json(os.path.join(folder, "metrics.json"))
    return {"config": name, "seed": int(seed), "final_valid_ppl": m["final_valid_ppl"], "test_ppl": m["test_ppl"],
            "valid_ppl": m["valid_ppl"], "train_ppl": m["train_ppl"], "epochs": m["epochs"],
            "minutes": sum(m["seconds"]) / 60, "words_per_sec": m.get("mean_words_per_sec"),
            "n_params": m["model"]["n_params"], "command": command(name, seed, root), "commit": m.get("commit")}


def resolve(config, seed, root=ROOT, corpus=None, echo=None):
    """`config` with its teacher "@NAME" replaced by that teacher's checkpoint for `seed` (trained
    if need be); any other config as it is."""
    if not config.teacher.startswith(PREFIX):
        return config
    return config.with_(teacher=ensure_teacher(config.teacher[len(PREFIX):], seed, root, corpus, echo))
