"""Converged teachers, trained once (dkp.study.teachers): a teacher missing is trained by its config's
recipe from its seed and kept; a second student of the same seed loads it; a lock left by a process
that is gone (ended on this machine, or silent for hours) is taken over, a fresh one from another
machine is not; a config that compresses is no teacher."""
import json
import os
import socket

import pytest

from dkp.study import teachers
from dkp.training.configs import CONFIGS, get_config


@pytest.fixture
def tiny_teacher(monkeypatch):
    """A config `teacher-test`: the tiny transformer on a few thousand tokens, one epoch."""
    config = get_config("transformer-tiny").with_(name="teacher-test", train_tokens=4_000, eval_tokens=1_000)
    monkeypatch.setitem(CONFIGS, "teacher-test", config)
    return config


def test_a_teacher_is_trained_once_and_reused(ptb, tmp_path, tiny_teacher, monkeypatch):
    calls = []
    real = teachers.train
    monkeypatch.setattr(teachers, "train", lambda *a, **k: calls.append(k["seed"]) or real(*a, **k))
    student = tiny_teacher.with_(name="student", structure="kp", compression=4, teacher="@teacher-test")
    first = teachers.resolve(student, 5, root=str(tmp_path), corpus=ptb)
    assert first.teacher == os.path.join(str(tmp_path), "teacher-test-seed5", "checkpoint.npz")
    assert os.path.isfile(first.teacher) and calls == [5]
    again = teachers.resolve(student.with_(distill_kl=1.0), 5, root=str(tmp_path), corpus=ptb)
    assert again.teacher == first.teacher and calls == [5]                  # loaded, not trained again
    assert not os.path.exists(os.path.join(str(tmp_path), "teacher-test-seed5.lock"))
    assert teachers.resolve(tiny_teacher, 5, root=str(tmp_path)) is tiny_teacher   # no teacher: unchanged


def test_a_teacher_records_the_command_that_trains_it_again(ptb, tmp_path, tiny_teacher):
    """A teacher trained by a worker records `python -m dkp train ...` (not the worker's argv), its
    summary gives it, and that command trains the same model, bit for bit."""
    import numpy as np

    from dkp.__main__ import main
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    path = teachers.ensure_teacher("teacher-test", 2, root=first, corpus=ptb)
    summary = teachers.summary("teacher-test", 2, root=first)
    with open(os.path.join(os.path.dirname(path), "metrics.json")) as f:
        assert json.load(f)["command"] == summary["command"] == teachers.command("teacher-test", 2, first)
    again = teachers.command("teacher-test", 2, second).split()
    assert again[:3] == ["python", "-m", "dkp"] and main(again[3:] + ["--quiet"]) == 0
    with np.load(path) as a, np.load(os.path.join(second, "teacher-test-seed2", "checkpoint.npz")) as b:
        arrays = [k for k in a.files if k != "__meta__"]          # the meta holds each run's timings
        assert a.files == b.files and arrays and all(np.array_equal(a[k], b[k]) for k in arrays)
    assert "ensure_teacher('teacher-test-quick', 2" in teachers.command("teacher-test-quick", 2, first)


def test_a_stale_lock_is_taken_over_and_a_compressed_config_is_no_teacher(ptb, tmp_path, tiny_teacher, monkeypatch):
    lock = tmp_path / "teacher-test-seed1.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": 2 ** 22 + 12345}))   # no such process
    path = teachers.ensure_teacher("teacher-test", 1, root=str(tmp_path), corpus=ptb)
    assert os.path.isfile(path) and not lock.exists()
    lock.write_text(json.dumps({"host": "another-machine", "pid": 1}))          # untouched for longer than stale
    os.utime(lock, (0, 0))
    os.utime(path, (0, 0))
    assert teachers.ensure_teacher("teacher-test", 1, root=str(tmp_path), corpus=ptb) == path   # finished: no wait
    assert teachers._holder_gone(str(lock), path)
    lock.write_text(json.dumps({"host": "another-machine", "pid": 1}))          # fresh: another machine's live holder
    assert not teachers._holder_gone(str(lock), path)
    monkeypatch.setitem(CONFIGS, "kp-test", tiny_teacher.with_(name="kp-test", structure="kp", compression=4))
    with pytest.raises(ValueError, match="config 'kp-test' compresses"):
        teachers.ensure_teacher("kp-test", 0, root=str(tmp_path))


def test_workers_that_need_the_same_missing_teacher_train_it_once(ptb, tmp_path, tiny_teacher, monkeypatch):
    """Two workers of one pool (threads here, each resolving as a worker process or a Dask worker
    does) ask at once for a teacher that is missing: one trains it, the other waits and loads it."""
    from concurrent.futures import ThreadPoolExecutor
    calls = []
    real = teachers.train
    monkeypatch.setattr(teachers, "train", lambda *a, **k: calls.append(k["seed"]) or real(*a, **k))
    monkeypatch.setattr(teachers, "POLL_SECONDS", 0.05)
    student = tiny_teacher.with_(name="student", structure="kp", compression=4, teacher="@teacher-test")
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda c: teachers.resolve(c, 3, root=str(tmp_path), corpus=ptb).teacher,
                            [student, student.with_(distill_kl=1.0)]))
    assert calls == [3] and got[0] == got[1] and os.path.isfile(got[0])
    assert not os.path.exists(os.path.join(str(tmp_path), "teacher-test-seed3.lock"))
