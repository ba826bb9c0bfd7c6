"""Bad input at the command line gets a clear error naming what is wrong, and changes nothing on disk:
each case runs `python -m dkp ...` through `main` in a folder whose files (names, sizes and bytes)
are compared before and after."""
import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest

from dkp.__main__ import main


def snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def run(argv, folder, capsys):
    """(exit code, stderr) of `python -m dkp ARGV` run in `folder`, asserting nothing there changed."""
    before = snapshot(folder)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        try:
            code = main(argv)
        except SystemExit as e:             # argparse's own errors
            code = e.code
    finally:
        os.chdir(cwd)
    assert snapshot(folder) == before, "the command changed files on disk"
    return code, capsys.readouterr().err


@pytest.fixture
def folder(tmp_path):
    """A folder holding an earlier run's files in runs/latest (stand-ins: their bytes must survive)."""
    (tmp_path / "runs" / "latest").mkdir(parents=True)
    (tmp_path / "runs" / "latest" / "checkpoint.npz").write_bytes(b"PK\x03\x04 an earlier run's checkpoint")
    (tmp_path / "runs" / "latest" / "metrics.json").write_text('{"final_valid_ppl": 120.0}')
    return tmp_path


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "-1"], "argument --epochs: expected a positive whole number, got '-1'"),
    (["train", "--lr", "zero"], "argument --lr: expected a positive number, got 'zero'"),
    (["train", "--cmr-p", "1.5", "--out", "elsewhere"], "argument --cmr-p: expected a probability in [0, 1)"),
    (["train", "--seed", "-3"], "argument --seed: expected a whole number >= 0"),
])
def test_numeric_and_named_flags_are_checked_where_they_are_parsed(argv, message, folder, capsys):
    code, err = run(argv, folder, capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--compression", "20", "--out", "new"], "--compression has no effect here: the gate matrices are dense"),
    (["train", "--structure", "kp", "--compression", "20", "--cmr-p", "0.3", "--out", "new"],
     "--cmr-p has no effect here: it acts on the sparse overlay S, and --doping is 0"),
    (["train", "--structure", "kp", "--compression", "20", "--no-anneal", "--out", "new"], "--no-anneal has no effect"),
    (["train", "--lr-restart", "--out", "new"], "--lr-restart has no effect here"),
    (["train", "--config", "huge", "--out", "new"], "config must be one of"),
])
def test_a_flag_that_would_change_nothing_is_refused_before_training(argv, message, folder, capsys):
    code, err = run(argv, folder, capsys)
    assert code == 1 and message in err
    assert not (folder / "new").exists()


def test_a_second_run_does_not_replace_the_first(folder, capsys):
    code, err = run(["train", "--config", "tiny"], folder, capsys)
    assert code == 1 and "--out 'runs/latest' holds a run already (checkpoint.npz, metrics.json)" in err
    assert "--resume" in err and "--overwrite" in err
    code, err = run(["train", "--config", "tiny", "--resume", "--overwrite"], folder, capsys)
    assert code == 1 and "--resume and --overwrite contradict each other" in err


def test_eval_on_a_file_that_is_not_a_checkpoint_says_so(folder, capsys):
    (folder / "notes.npz").write_text("a text file with the wrong name")
    code, err = run(["eval", "notes.npz"], folder, capsys)
    assert code == 1 and "is not a dkp checkpoint: not a readable .npz archive" in err and "pickle" not in err


def test_report_names_a_malformed_file_and_refuses_json_that_is_not_a_record(folder, capsys):
    results = folder / "results"
    results.mkdir()
    (results / "kp-loss.json").write_text('{"experiment": "kp-loss", "arms": ')
    code, err = run(["report", "results"], folder, capsys)
    assert code == 1 and "kp-loss.json: not valid JSON" in err
    (results / "kp-loss.json").write_text(json.dumps({"hello": "world"}))
    code, err = run(["report", "results"], folder, capsys)
    assert code == 1 and "kp-loss.json: not an experiment record" in err
    (results / "kp-loss.json").unlink()
    (results / "notes.json").write_text("{}")
    code, err = run(["report", "results"], folder, capsys)
    assert code == 1 and "no experiment results" in err
    code, err = run(["report", "nowhere"], folder, capsys)
    assert code == 1 and "'nowhere' is not a directory" in err


def test_an_unreachable_scheduler_fails_within_seconds(folder, capsys):
    pytest.importorskip("distributed")
    with socket.socket() as s:                 # a port nothing listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    code, err = run(["experiment", "doping", "--quick", "--seeds", "1", "--scheduler", f"tcp://127.0.0.1:{port}",
                     "--out", "scratch", "--quiet"], folder, capsys)
    assert code == 1 and f"127.0.0.1:{port}" in err
    assert time.monotonic() - t0 < 20            # Dask's default would wait 30 s
