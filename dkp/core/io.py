"""Atomic, pickle-free persistence: JSON results and .npz checkpoints.

A file is written to a temporary name in the same directory, flushed to disk, then renamed over the
target, so a crash mid-write leaves the previous file intact. Checkpoints hold only numeric arrays
and JSON strings and are read with allow_pickle=False.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


def _atomic_write(path, write):
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_json(path, obj):
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    _atomic_write(path, lambda f: f.write(data))


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_npz(path, arrays, meta):
    """arrays: {name: ndarray}; meta: a JSON-serialisable dict stored as the string '__meta__'."""
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload["__meta__"] = np.array(json.dumps(meta))
    _atomic_write(path, lambda f: np.savez(f, **payload))


def load_npz(path):
    """-> (arrays, meta). Raises CheckpointError with the reason for a missing or corrupt file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":      # every .npz is a zip archive
        raise CheckpointError(f"{path!r} is not a dkp checkpoint: not a readable .npz archive (the "
                              f"checkpoint.npz that `python -m dkp train` writes)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"checkpoint {path!r} is not a readable .npz file ({e})") from None
    if "__meta__" not in arrays:
        raise CheckpointError(f"checkpoint {path!r} has no '__meta__' entry: not written by dkp")
    meta = json.loads(str(arrays.pop("__meta__")))
    return arrays, meta


def provenance():
    """The command line and the git commit (if any) that produced a result."""
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    argv = sys.argv[:]
    if argv and argv[0].endswith("__main__.py"):
        argv[0] = "python -m dkp"
    return {"command": " ".join(argv), "commit": commit}
