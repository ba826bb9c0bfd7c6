"""Training loop: it learns, resume == straight bit for bit, NaN guard, checkpoints, CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dkp.__main__ import main
from dkp.core import io
from dkp.training.checkpoint import CHECKPOINT
from dkp.training.configs import get_config
from dkp.training.loop import METRICS, Trainer, TrainingDiverged, train

QUICK = get_config("tiny").with_(train_tokens=40_000, eval_tokens=6_000, epochs=2, hidden=32)


def test_short_training_beats_the_unigram_model(ptb):
    """Notebook 01's short run (FULL = False, section 5): one pass over 200k PTB tokens takes
    validation perplexity far below the unigram model's. The notebook loads this run instead of
    training it again (dkp.course.notebook.demo_training)."""
    from dkp.course.notebook import demo_training
    config = get_config("tiny").with_(train_tokens=200_000, eval_tokens=20_000, epochs=2)
    _, metrics, _ = demo_training(config, seed=0, corpus=ptb)
    unigram = ptb.unigram_perplexity("valid")           # about 685
    assert metrics["valid_ppl"][0] < 0.6 * unigram, (metrics["valid_ppl"][0], unigram)
    assert metrics["train_ppl"][0] < 1000 and metrics["valid_ppl"][1] < metrics["valid_ppl"][0]


def test_resume_equals_straight_bit_for_bit(ptb, tmp_path):
    straight = train(QUICK, seed=3, out=tmp_path / "a", corpus=ptb, progress=False)
    train(QUICK.with_(epochs=1), seed=3, out=tmp_path / "b", corpus=ptb, progress=False)
    resumed = train(QUICK, seed=3, out=tmp_path / "b", resume=True, corpus=ptb, progress=False)
    assert resumed["epochs"] == straight["epochs"] == 2
    assert resumed["valid_ppl"] == straight["valid_ppl"]
    assert resumed["test_ppl"] == straight["test_ppl"]
    a, _ = io.load_npz(tmp_path / "a" / CHECKPOINT)
    b, _ = io.load_npz(tmp_path / "b" / CHECKPOINT)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_with_dropout_and_adam_is_exact(ptb, tmp_path):
    config = QUICK.with_(dropout=0.3, optimizer="adam", lr=2e-3)
    straight = train(config, seed=1, out=tmp_path / "a", corpus=ptb, progress=False)
    train(config.with_(epochs=1), seed=1, out=tmp_path / "b", corpus=ptb, progress=False)
    resumed = train(config, seed=1, out=tmp_path / "b", resume=True, corpus=ptb, progress=False)
    assert resumed["valid_ppl"] == straight["valid_ppl"]


def test_metrics_json(ptb, tmp_path):
    train(QUICK.with_(epochs=1), seed=0, out=tmp_path, corpus=ptb, progress=False)
    m = json.loads((tmp_path / METRICS).read_text())
    for key in ("config", "seed", "epochs", "train_ppl", "valid_ppl", "final_valid_ppl", "test_ppl",
                "words_per_sec", "optimizer", "command", "commit", "layers"):
        assert key in m, key
    assert m["config"]["hidden"] == 32 and len(m["valid_ppl"]) == 1
    assert m["layers"][0]["compression"] == 1.0


def test_nan_loss_stops_with_a_clear_message(ptb):
    def poison(trainer, step):
        if step == 3:
            trainer.model.embedding.params["W"][:] = np.nan
    trainer = Trainer(QUICK, corpus=ptb, progress=False, hooks=[poison])
    with pytest.raises(TrainingDiverged, match=r"became nan at epoch 1, window 4 \(step 4"):
        trainer.run()


def test_resume_refuses_a_different_config(ptb, tmp_path):
    train(QUICK.with_(epochs=1), out=tmp_path, corpus=ptb, progress=False)
    with pytest.raises(io.CheckpointError, match="different config.*hidden"):
        train(QUICK.with_(hidden=16), out=tmp_path, resume=True, corpus=ptb, progress=False)


def test_checkpoint_of_the_wrong_shape(ptb, tmp_path):
    trainer = Trainer(QUICK, corpus=ptb, progress=False)
    trainer.save(tmp_path / "c.npz")
    arrays, meta = io.load_npz(tmp_path / "c.npz")
    arrays["param.dec_b"] = arrays["param.dec_b"][:-1]
    io.save_npz(tmp_path / "c.npz", arrays, meta)
    with pytest.raises(io.CheckpointError, match=r"'dec_b' has shape \(9999,\), but the model expects \(10000,\)"):
        trainer.load(tmp_path / "c.npz")


def test_corrupt_and_missing_checkpoints(tmp_path):
    with pytest.raises(io.CheckpointError, match="does not exist"):
        io.load_npz(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(io.CheckpointError, match="not a readable"):
        io.load_npz(tmp_path / "bad.npz")


def test_checkpoints_load_without_pickle(ptb, tmp_path):
    trainer = Trainer(QUICK, corpus=ptb, progress=False)
    trainer.save(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "r.json"
    io.save_json(path, {"a": 1})
    with pytest.raises(TypeError):
        io.save_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_cli_help():
    for cmd in (["--help"], ["train", "--help"], ["eval", "--help"]):
        r = subprocess.run([sys.executable, "-m", "dkp", *cmd], capture_output=True, text=True)
        assert r.returncode == 0 and "usage" in r.stdout


def test_cli_train_then_eval(tmp_path, capsys):
    """A run whose every matrix is compressed from a dense warm-up, with distillation: `eval`
    rebuilds the compressed model from the checkpoint alone."""
    out = tmp_path / "run"
    assert main(["train", "--config", "tiny", "--train-tokens", "20000", "--epochs", "1", "--structure", "kp",
                 "--compression", "4", "--dense-warmup", "0.5", "--vocab-structure", "groupreduce",
                 "--vocab-compression", "6", "--vocab-groups", "4", "--distill-kl", "0.5",
                 "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / METRICS).read_text())
    assert metrics["model"]["parts"][0]["kind"] == "GroupLowRank" and metrics["model"]["compression"] > 5
    capsys.readouterr()
    assert main(["eval", str(out / CHECKPOINT), "--splits", "valid"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["valid_ppl"] == pytest.approx(metrics["final_valid_ppl"], rel=1e-9)


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint") and "Traceback" not in err
    assert main(["train", "--config", "huge", "--out", str(tmp_path)]) == 1
    assert "config must be one of" in capsys.readouterr().err
    assert main(["train", "--config", "tiny", "--out", str(tmp_path / "new"), "--resume"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_a_checkpoint_with_the_old_parameter_names_still_loads():
    """Checkpoints written before the embedding and decoder became matrices named them "embed" and
    "dec_W"; they load into today's "embed.W" and "dec.W"."""
    from dkp.core.model import LanguageModel
    from dkp.training.checkpoint import load_model_arrays
    old = LanguageModel(30, 6, 1, seed=1)
    arrays = {f"param.{k}": v for k, v in old.params.items()}
    arrays["param.embed"], arrays["param.dec_W"] = arrays.pop("param.embed.W"), arrays.pop("param.dec.W")
    new = LanguageModel(30, 6, 1, seed=2)
    load_model_arrays(new, arrays)
    for k, v in old.params.items():
        np.testing.assert_array_equal(new.params[k], v)


def test_threads_reach_the_blas_before_numpy_loads_it(monkeypatch, tmp_path, capsys):
    """`train --threads N` sets the BLAS thread count in the environment the BLAS reads when it loads
    (main reads the option before building its parser, which imports NumPy); a bad count is named."""
    import dkp.__main__ as cli
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    cli._blas_threads(["train", "--config", "tiny", "--threads", "3"])
    assert os.environ["OPENBLAS_NUM_THREADS"] == os.environ["OMP_NUM_THREADS"] == "3"
    cli._blas_threads(["train", "--config", "tiny"])               # no option: nothing changes
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"
    assert main(["train", "--config", "tiny", "--threads", "0", "--out", str(tmp_path)]) == 1
    assert "--threads must be a positive number" in capsys.readouterr().err


# --- the config makes its own flags --------------------------------------------------------------------
def test_a_declared_config_field_is_a_flag_and_an_override():
    """Adding a field to the config is one edit: declared with `option`, it is a flag of `train`,
    parsed with its check, and an override of the config, with nothing listed anywhere else."""
    import argparse
    from dataclasses import dataclass

    from dkp.training.configs import NON_NEGATIVE, Config, option
    from dkp.training.flags import add_config_flags, apply, overrides

    @dataclass(frozen=True)
    class Wider(Config):
        momentum: float = option(0.0, "momentum of the update", check=NON_NEGATIVE, group="an experiment's knobs")
        warm: bool = option(False, "start warm")

    parser = argparse.ArgumentParser()
    add_config_flags(parser, Wider)
    assert "--momentum" in parser.format_help() and "momentum of the update" in parser.format_help()
    args = parser.parse_args(["--momentum", "0.9", "--warm", "--epochs", "3"])
    changes = overrides(args, Wider)
    assert changes == {"momentum": 0.9, "warm": True, "epochs": 3}
    assert apply(Wider(), changes).momentum == 0.9
    with pytest.raises(SystemExit):                     # its check runs where the flag is parsed
        parser.parse_args(["--momentum", "-1"])


def test_every_config_field_but_the_name_has_a_flag_in_train_help(capsys):
    from dataclasses import fields

    from dkp.__main__ import main
    from dkp.training.configs import Config
    from dkp.training.flags import flag_name
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for f in fields(Config):
        if f.name != "name":
            assert flag_name(f) in text, f.name


@pytest.mark.parametrize("argv, flag", [
    (["--compression", "20"], "--compression"),                       # dense: nothing to compress
    (["--cmr-p", "0.3"], "--cmr-p"),                                  # no S to drop
    (["--structure", "kp", "--compression", "20", "--kp-split", "flops", "--cmr-variant", "branch"], "--cmr-variant"),
    (["--vocab-compression", "6"], "--vocab-compression"),
    (["--distill-kl", "1"], "--distill-kl"),
])
def test_a_flag_that_would_change_nothing_is_an_error_naming_it(argv, flag):
    import argparse

    from dkp.training.configs import get_config
    from dkp.training.flags import add_config_flags, apply, overrides
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    with pytest.raises(ValueError, match=f"^{flag} has no effect here"):
        apply(get_config("small"), overrides(parser.parse_args(argv)))
