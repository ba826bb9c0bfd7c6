"""The transformer served by the package's one trainer, evaluation, sampler, checkpoints, 8-bit storage,
experiment runner and command line (dkp.core.transformer itself is tested in test_transformer.py):
transformer-tiny trains and its loss falls; a doped Kronecker transformer anneals S with co-matrix
dropout; GroupReduce from a dense warm-up on a tied transformer, distilled from its teacher;
resume equals the straight run bit for bit; the recipe's pieces (AdamW, warm-up and cosine decay,
the gradient scale); and the flags, with the errors that name them."""
import argparse
import json
import math

import numpy as np
import pytest

from dkp.__main__ import main
from dkp.compression.quantize import quantize_model, quantized_bytes, quantized_nbytes
from dkp.core import io
from dkp.core.optim import Adam, AdamW, cosine_lr
from dkp.core.sample import generate, sample
from dkp.core.transformer import TransformerLM
from dkp.core.weights import Doped, GroupLowRank, Kronecker
from dkp.training.checkpoint import CHECKPOINT
from dkp.training.configs import get_config
from dkp.training.evaluate import evaluate, model_report
from dkp.training.flags import add_config_flags, apply, overrides
from dkp.training.loop import METRICS, Trainer, gradient_scale, learning_rate, train

TINY = get_config("transformer-tiny")
GATES = [f"blocks.{l}.{part}" for l in range(2) for part in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")]


def flags(*argv, base=TINY):
    """`base` with the `train` flags argv, as the command line makes it (needs rules included)."""
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    return apply(base, overrides(parser.parse_args(list(argv))))


class Stop(Exception):
    pass


def stopped(config, epochs, seed, out, corpus):
    """Train `config` into `out` and stop it (as a killed run) once its checkpoint of epoch `epochs`
    is written, before the next step."""
    def stop(trainer, step):
        if step == epochs * trainer.steps_per_epoch:
            raise Stop
    trainer = Trainer(config, seed=seed, out=out, corpus=corpus, progress=False)
    trainer.before_changes.append(stop)
    with pytest.raises(Stop):
        trainer.run()


class Losses:
    """A hook that records the training loss of every step."""
    def __init__(self):
        self.seen = []

    def __call__(self, trainer, step):
        if trainer.last_loss is not None:
            self.seen.append(trainer.last_loss)


@pytest.fixture(scope="module")
def tiny(ptb):
    """transformer-tiny as named (the full config: 50,000 tokens, one epoch), trained once."""
    losses = Losses()
    trainer = Trainer(TINY, seed=0, corpus=ptb, progress=False, hooks=[losses])
    return trainer, trainer.run(), losses.seen


def test_transformer_tiny_trains_and_its_loss_falls(tiny, ptb):
    trainer, metrics, losses = tiny
    assert isinstance(trainer.model, TransformerLM) and trainer.model.tie and trainer.model.block_size == 32
    assert type(trainer.optimizer) is AdamW and trainer.optimizer.weight_decay == 0.1
    first, last = np.mean(losses[:5]), np.mean(losses[-10:])
    assert first > math.log(len(ptb.vocab)) - 0.5            # it starts near uniform over 10,000 words
    assert last < first - 1.5, (first, last)
    assert metrics["valid_ppl"][0] < 1200 and metrics["test_ppl"] < 1200   # uniform: 10,000
    # the learning rate warmed up, then decayed along the cosine to a tenth of --lr at the last step
    assert metrics["lr"] == [pytest.approx(TINY.lr * 0.1)]
    # what the model stores: every parameter counted once (the tied softmax is the embedding)
    report = model_report(trainer.model)
    assert report["n_params"] == sum(p.size for p in trainer.model.params.values())
    assert [p["part"] for p in report["parts"]] == ["embed", *GATES, "positions", "layernorms", "biases"]
    assert [r["name"] for r in metrics["layers"]] == GATES and [r["layer"] for r in metrics["layers"]] == list(range(8))


def test_evaluation_and_the_eval_command(tiny, tmp_path, capsys):
    trainer, metrics, _ = tiny
    model = trainer.model
    assert evaluate(model, trainer.valid_ids, TINY.eval_batch, TINY.bptt) == metrics["final_valid_ppl"]
    trainer.save(tmp_path / CHECKPOINT)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / CHECKPOINT), "--splits", "valid"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["valid_ppl"] == pytest.approx(evaluate(model, trainer.corpus.valid, TINY.eval_batch, TINY.bptt),
                                               rel=1e-12)


def test_sampling_with_the_key_value_cache(tiny):
    """core.sample feeds one token at a time with the key/value cache: the same tokens as drawing
    each from a full forward of the whole sequence with the same random numbers."""
    trainer, _, _ = tiny
    model, prompt = trainer.model, [5, 17, 2, 40]
    n = TINY.block_size - len(prompt)
    drawn = sample(model, prompt, n, temperature=1.0, seed=3)
    rng, seq = np.random.default_rng(3), list(prompt)
    for _ in range(n):
        p = np.exp(model.forward(np.array(seq)[:, None], None).logits[-1, 0].astype(np.float64))
        cdf = np.cumsum(p)
        seq.append(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")))
    np.testing.assert_array_equal(drawn, seq[len(prompt):])
    assert len(set(drawn.tolist())) > 5
    assert len(generate(model, trainer.corpus.vocab, "the", n_tokens=10, seed=1).split()) >= 5
    with pytest.raises(ValueError, match=r"n_tokens = 29 after a prompt of 4 token\(s\) makes 33 positions, more "
                                         r"than the model's block_size = 32 \(at most 28 here\)"):
        sample(model, prompt, n + 1)


def test_8_bit_storage(tiny):
    trainer, metrics, _ = tiny
    model = trainer.model
    before = {k: v.copy() for k, v in model.params.items()}
    q = quantize_model(model)
    assert all(np.array_equal(before[k], v) for k, v in model.params.items())    # the model is left as it was
    assert all(np.abs(q.params[k] - v).max() > 0 for k, v in before.items() if k.endswith(".W"))
    ppl = evaluate(q, trainer.valid_ids, TINY.eval_batch, TINY.bptt)
    assert ppl != metrics["final_valid_ppl"] and abs(ppl / metrics["final_valid_ppl"] - 1) < 0.02
    # int8 and a scale per row of every matrix, and of the positions; int8 in blocks of the rest
    matrices = sum(quantized_nbytes(p) for M in model.matrices.values() for p in M.params.values())
    rest = {k: p for k, p in model.params.items() if k == "pos" or not k.endswith(".W")}
    assert len(rest) == 1 + 2 * (2 * 2 + 4) + 2 + 1           # pos; per block 2 LayerNorms (g, b), 4 biases; ln_f; dec_b
    assert quantized_bytes(model) == matrices + sum(quantized_nbytes(p) for p in rest.values())
    assert quantized_bytes(model) < model_report(model)["n_bytes"] / 3.5


def test_resume_equals_the_straight_run_bit_for_bit(ptb, tmp_path):
    """Two epochs straight, against a run stopped after its first epoch's checkpoint and resumed
    (dropout, AdamW's moments, the cosine schedule, the RNG)."""
    config = TINY.with_(train_tokens=12_000, eval_tokens=2_000, epochs=2, dropout=0.2)
    straight = train(config, seed=4, out=tmp_path / "a", corpus=ptb, progress=False)
    stopped(config, 1, 4, tmp_path / "b", ptb)
    resumed = train(config, seed=4, out=tmp_path / "b", resume=True, corpus=ptb, progress=False)
    assert resumed["valid_ppl"] == straight["valid_ppl"] and resumed["test_ppl"] == straight["test_ppl"]
    assert resumed["lr"] == straight["lr"]
    a, _ = io.load_npz(tmp_path / "a" / CHECKPOINT)
    b, _ = io.load_npz(tmp_path / "b" / CHECKPOINT)
    assert a.keys() == b.keys() and any(k.startswith("opt.m.") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # a cosine schedule spans the run's epochs: resuming with others would change every step's rate
    with pytest.raises(io.CheckpointError, match="cosine learning-rate schedule spans the run's epochs"):
        train(config.with_(epochs=3), seed=4, out=tmp_path / "b", resume=True, corpus=ptb, progress=False)


def test_a_doped_kronecker_transformer_anneals_with_co_matrix_dropout(ptb):
    config = flags("--structure", "kp", "--compression", "4", "--doping", "0.01", "--anneal-start", "0.2",
                   "--anneal-end", "0.8", "--anneal-every", "5", "--cmr-p", "0.3", "--cmr-schedule", "threshold",
                   "--cmr-threshold", "0.1", "--train-tokens", "30000", "--eval-tokens", "3000")
    seen = []

    def watch(trainer, step):   # after the step's scheduled changes: the density and p it trains with
        W = trainer.model.matrices["blocks.1.mlp.fc"]
        seen.append((W.density, W.cmr_p))
    losses = Losses()
    trainer = Trainer(config, seed=0, corpus=ptb, progress=False, hooks=[watch, losses])
    metrics = trainer.run()
    model = trainer.model
    assert all(isinstance(model.matrices[name], Doped) and isinstance(model.matrices[name].structured, Kronecker)
               for name in GATES)
    for row in metrics["layers"]:
        assert row["density_of_S"] == pytest.approx(0.01, abs=1e-3), row["name"]
        assert row["compression"] >= 4 * 0.98, row["name"]
    # AdamW's moments of each S follow the entries the anneal kept
    assert all(trainer.optimizer.m[f"{name}.S"].shape == model.matrices[name].params["S"].shape for name in GATES)
    densities = [d for d, _ in seen]
    assert densities[0] == 1.0 and densities == sorted(densities, reverse=True)
    assert {p for d, p in seen if d > 0.1} == {0.0} and {p for d, p in seen if d <= 0.1} == {0.3}
    assert np.mean(losses.seen[-10:]) < np.mean(losses.seen[:5]) - 1.0
    assert np.isfinite(metrics["final_valid_ppl"]) and metrics["final_valid_ppl"] < len(ptb.vocab)


def test_groupreduce_from_a_dense_warmup_on_a_tied_transformer(ptb, tmp_path):
    """At the switch each gate matrix becomes its nearest Kronecker product plus S = W - KP, and the
    tied embedding (the softmax too) its GroupReduce form within its budget: each doped matrix is
    the dense one exactly. A teacher distils; resume crosses the switch."""
    config = flags("--structure", "kp", "--compression", "4", "--doping", "0.05", "--dense-warmup", "1",
                   "--anneal-start", "1.2", "--anneal-end", "2.5", "--anneal-every", "3", "--vocab-structure",
                   "groupreduce", "--vocab-compression", "4", "--vocab-groups", "4", "--distill-kl", "0.5",
                   "--distill-hidden", "1", "--train-tokens", "8000", "--eval-tokens", "2000", "--epochs", "3")
    trainer = Trainer(config, seed=0, corpus=ptb, progress=False)
    model = trainer.model.astype(np.float64)
    x, y = ptb.train[:64].reshape(32, 2), ptb.train[1:65].reshape(32, 2)
    dense = {name: M.to_dense() for name, M in model.matrices.items()}
    assert list(dense) == ["embed", *GATES]                  # tied: one vocabulary matrix
    switch = trainer.warmup.convert(model, trainer.train_ids)
    assert set(switch.matrices) == set(dense) and switch.teacher is not None
    trainer.switch(switch)
    assert isinstance(model.embedding, GroupLowRank) and model.decoder is model.embedding
    for name in GATES:
        assert isinstance(model.matrices[name], Doped)
        np.testing.assert_allclose(model.matrices[name].to_dense(), dense[name], atol=1e-12)
    teacher = switch.teacher.model
    for name, W in dense.items():
        np.testing.assert_array_equal(teacher.matrices[name].to_dense(), W)
    from dkp.compression.groupreduce import budget_params
    assert model.embedding.n_params <= budget_params(model.embedding.shape, 4)
    assert 0 < np.linalg.norm(model.embedding.to_dense() - dense["embed"]) < np.linalg.norm(dense["embed"])
    assert np.isfinite(model.forward(x, None, y, distill=switch.teacher.target(x, y, first=True)).loss)
    # trained through the switch, and resumed from a checkpoint taken after it (the teacher's too)
    straight = train(config, seed=2, out=tmp_path / "a", corpus=ptb, progress=False)
    stopped(config, 2, 2, tmp_path / "b", ptb)
    assert any(k.startswith("hook.DenseWarmup.teacher.") for k in io.load_npz(tmp_path / "b" / CHECKPOINT)[0])
    resumed = train(config, seed=2, out=tmp_path / "b", resume=True, corpus=ptb, progress=False)
    assert resumed["valid_ppl"] == straight["valid_ppl"] and resumed["test_ppl"] == straight["test_ppl"]
    parts = {p["part"]: p["kind"] for p in straight["model"]["parts"]}
    assert parts["embed"] == "GroupLowRank" and "dec" not in parts and parts["blocks.0.mlp.fc"] == "Doped"
    assert straight["model"]["compression"] > 3


def test_an_experiment_run_records_a_doped_transformer(ptb):
    """The experiment runner's run_one on a doped transformer: the CMA diagnostics per matrix along
    the anneal (the rows each matrix multiplied, model.matrix_inputs) and the 8-bit model."""
    from dkp.study import runner
    config = TINY.with_(structure="kp", compression=4, doping=0.05, anneal_start=0.2, anneal_end=0.8,
                        anneal_every=5, train_tokens=12_000, eval_tokens=2_000)
    probes = dict(runner.QUICK_COURSE_PROBES, tokens=800, stats_tokens=400, cma_points=3, quantize_bits=8)
    record = runner.run_one(config.to_dict(), 0, probes)
    assert [p["density"] for p in record["cma"][:-1]] == sorted(p["density"] for p in record["cma"][:-1])[::-1]
    end = record["cma"][-1]
    assert end["final"] and end["ppl"] > 1 and end["ppl_s_off"] > 1 and end["ppl_s_off"] != end["ppl"]
    assert [r["matrix"] for r in end["layers"]] == GATES and all(0 < r["sparse_share"] < 1 for r in end["layers"])
    assert record["quantized"]["n_bytes"] < record["model"]["n_bytes"]
    assert abs(record["quantized"]["final_valid_ppl"] / record["final_valid_ppl"] - 1) < 0.05


def test_the_recipe_pieces():
    # warm-up: linear to lr at its last step; then a cosine to a tenth of lr at the run's last step
    lrs = [cosine_lr(s, 1.0, 4, 20) for s in range(22)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0] and lrs[19] == pytest.approx(0.1) and lrs[21] == pytest.approx(0.1)
    assert lrs[4] == 1.0 and all(a > b for a, b in zip(lrs[4:19], lrs[5:20]))
    assert lrs[4 + 15 // 2] == pytest.approx(0.55, abs=0.06)   # half way: half way down
    # the trainer's rate of each step; with lr_restart the dense warm-up has its own cosine (the dense
    # model's run), and another starts at the switch
    c = TINY.with_(lr=1.0, warmup_steps=0, epochs=4, dense_warmup=2.0, lr_restart=True, structure="kp", compression=4)
    assert learning_rate(c, 0, 0, 10) == 1.0 and learning_rate(c, 1, 19, 10) == pytest.approx(0.1)
    assert learning_rate(c, 2, 20, 10) == 1.0 and learning_rate(c, 3, 39, 10) == pytest.approx(0.1)
    assert learning_rate(get_config("small"), 5, 0, 10) == 1.0 / 2.0 ** 2     # Zaremba's, as before
    # the LSTM's gradient is that of the loss summed over the window (Zaremba's), the transformer's the mean's
    assert gradient_scale(get_config("small"), 35) == 35 and gradient_scale(TINY, 32) == 1.0
    # AdamW: Adam after shrinking every parameter of 2 or more dimensions by lr * weight_decay
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(3), "S": rng.standard_normal(5)}
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    plain = {k: v.copy() for k, v in params.items()}
    AdamW(0.1, weight_decay=0.5).step(params, grads)
    shrunk = {k: v * (0.95 if v.ndim >= 2 else 1.0) for k, v in plain.items()}
    Adam(0.1).step(shrunk, grads)
    for k in params:
        np.testing.assert_array_equal(params[k], shrunk[k])


def test_the_transformers_flags():
    assert flags("--heads", "4", "--block-size", "64", "--no-tie", "--weight-decay", "0.05").tie is False
    small = get_config("transformer-small")
    assert small.model == "transformer" and small.tie and small.optimizer == "adamw" and small.lr_schedule == "cosine"
    assert small.bptt <= small.block_size and small.hidden % small.heads == 0 and small.train_tokens == 0
    for argv, flag in [(["--heads", "4"], "--heads"), (["--block-size", "64"], "--block-size"), (["--tie"], "--tie"),
                       (["--no-tie"], "--tie"), (["--weight-decay", "0.1"], "--weight-decay"),
                       (["--warmup-steps", "100"], "--warmup-steps")]:
        with pytest.raises(ValueError, match=f"^{flag} has no effect here"):
            flags(*argv, base=get_config("small"))
    for argv, flag in [(["--lr-decay", "2"], "--lr-decay"), (["--decay-after", "3"], "--decay-after"),
                       (["--optimizer", "adam", "--weight-decay", "0.1"], "--weight-decay")]:
        with pytest.raises(ValueError, match=f"^{flag} has no effect here"):
            flags(*argv, base=small)


@pytest.mark.parametrize("argv, message", [
    (["--bptt", "64"], "--bptt 64 is more than --block-size 32"),
    (["--heads", "3"], "--heads 3 must divide --hidden 32"),
    (["--heads", "4"], None),
])
def test_the_command_line_names_a_wrong_model(argv, message, tmp_path, capsys):
    code = main(["train", "--config", "transformer-tiny", "--train-tokens", "3000", "--eval-tokens", "1000",
                 *argv, "--out", str(tmp_path / "run"), "--quiet"])
    if message is None:
        assert code == 0 and json.loads((tmp_path / "run" / METRICS).read_text())["config"]["heads"] == 4
    else:
        assert code == 1 and message in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_train_help_lists_the_transformers_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--model {lstm,transformer}", "--heads", "--block-size", "--tie | --no-tie", "--lr-schedule",
                 "--warmup-steps", "--weight-decay", "adamw", "transformer-small", "transformer-tiny"):
        assert flag in text, flag
