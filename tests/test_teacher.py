"""From a trained dense model to a compressed one: the switch of a dense warm-up (gate matrices,
embedding and softmax), distillation from the frozen dense model, checkpoints across the switch,
and the whole-model storage report."""
import numpy as np
import pytest

from dkp.compression import groupreduce as gr
from dkp.compression.structures import check_structure
from dkp.compression.teacher import DenseWarmup
from dkp.core.weights import Dense, GroupLowRank, Kronecker, LowRank, Pruned
from dkp.training.configs import get_config
from dkp.training.evaluate import model_report
from dkp.core import io
from dkp.training.checkpoint import CHECKPOINT, load_checkpoint
from dkp.training.loop import Trainer, train

CONFIG = get_config("tiny").with_(hidden=16, train_tokens=8_000, eval_tokens=2_000, epochs=2, structure="kp",
                                  compression=4, dense_warmup=0.5, vocab_structure="groupreduce",
                                  vocab_compression=6, vocab_groups=4)


@pytest.mark.parametrize("vocab", ["groupreduce", "svd", "prune"])
def test_the_switch_compresses_every_matrix_from_the_dense_one(ptb, vocab):
    config = CONFIG.with_(vocab_structure=vocab, distill_kl=0.5)
    trainer = Trainer(config, seed=0, corpus=ptb, progress=False)
    model = trainer.model
    dense = {name: M.to_dense() for name, M in model.matrices.items()}
    hook = trainer.find_hook(DenseWarmup)
    assert f"embedding and softmax {vocab} 6x" in hook.describe() and "KL weight 0.5" in hook.describe()
    trainer.switch(hook.convert(model, trainer.train_ids))
    kind = {"groupreduce": GroupLowRank, "svd": LowRank, "prune": Pruned}[vocab]
    for name, M in model.matrices.items():
        assert isinstance(M, kind if name in ("embed", "dec") else Kronecker), name
        if name in ("embed", "dec"):
            assert M.n_params <= gr.budget_params(M.shape, 6)
            assert np.linalg.norm(M.to_dense() - dense[name]) < np.linalg.norm(dense[name])
    # the teacher is the dense model as it stood, frozen
    teacher = trainer.teacher.model
    assert all(isinstance(M, Dense) for M in teacher.matrices.values())
    for name, M in teacher.matrices.items():
        np.testing.assert_array_equal(M.to_dense(), dense[name])


def test_a_student_with_a_teacher_trains_and_resumes_exactly(ptb, tmp_path):
    config = CONFIG.with_(doping=0.05, anneal_start=0.6, anneal_end=1.5, anneal_every=3, distill_kl=0.5,
                          distill_hidden=1.0)
    straight = train(config, seed=1, out=tmp_path / "a", corpus=ptb, progress=False)
    train(config.with_(epochs=1), seed=1, out=tmp_path / "b", corpus=ptb, progress=False)
    resumed = train(config, seed=1, out=tmp_path / "b", resume=True, corpus=ptb, progress=False)
    assert resumed["valid_ppl"] == straight["valid_ppl"] and resumed["test_ppl"] == straight["test_ppl"]
    assert np.isfinite(straight["test_ppl"]) and straight["test_ppl"] < len(ptb.vocab)
    parts = {p["part"]: p for p in straight["model"]["parts"]}
    assert parts["embed"]["kind"] == parts["dec"]["kind"] == "GroupLowRank"
    assert parts["lstm0"]["kind"] == "Doped"
    # a checkpoint whose word order is damaged, or which lacks its teacher, says so
    arrays, meta = io.load_npz(tmp_path / "b" / CHECKPOINT)
    broken = dict(arrays, **{"buffer.embed.order": arrays["buffer.embed.order"][:-1]})
    io.save_npz(tmp_path / "c.npz", broken, meta)
    trainer = Trainer(config, seed=1, corpus=ptb, progress=False)
    with pytest.raises(io.CheckpointError, match="the buffers of 'embed' do not fit the model"):
        load_checkpoint(trainer, tmp_path / "c.npz")
    io.save_npz(tmp_path / "d.npz", {k: v for k, v in arrays.items() if not k.startswith("hook.")}, meta)
    with pytest.raises(io.CheckpointError, match="lacks the teacher's parameters"):
        load_checkpoint(Trainer(config, seed=1, corpus=ptb, progress=False), tmp_path / "d.npz")


@pytest.mark.parametrize("family", ["lstm", "transformer"])
def test_a_student_starts_from_its_teachers_checkpoint(ptb, tmp_path, family):
    """--teacher PATH: the dense model of a finished run, loaded before the first step, is what the
    switch compresses at step 0; a doped student with S = the residual computes exactly the
    teacher's function there, and distillation freezes the teacher as loaded. A checkpoint of another
    architecture, or of a compressed model, is refused with what differs."""
    base = (get_config("transformer-tiny").with_(train_tokens=6_000, eval_tokens=1_000, epochs=1) if family == "transformer"
            else get_config("tiny").with_(hidden=16, train_tokens=6_000, eval_tokens=1_000, epochs=1))
    train(base, seed=3, out=tmp_path / "teacher", corpus=ptb, progress=False)
    path = str(tmp_path / "teacher" / CHECKPOINT)
    teacher = Trainer(base, seed=3, corpus=ptb, progress=False)
    load_checkpoint(teacher, path)
    student = base.with_(structure="kp", compression=4, doping=0.05, anneal_start=0.2, anneal_end=0.9, teacher=path,
                         distill_kl=1.0)
    trainer = Trainer(student, seed=7, corpus=ptb, progress=False)
    for name, M in trainer.model.matrices.items():                 # before the switch: the teacher itself
        np.testing.assert_array_equal(M.to_dense(), teacher.model.matrices[name].to_dense(), err_msg=name)
    assert trainer.warmup.step == 0 and f"the teacher {path}" in trainer.warmup.describe()
    trainer.scheduled_changes(0)
    x = np.asarray(ptb.valid[:2 * 16], dtype=np.int64).reshape(16, 2)
    for model in (trainer.model, teacher.model, trainer.teacher.model):
        model.set_training(False)
    logits = [m.forward(x, m.zero_state(2)).logits for m in (trainer.model, teacher.model, trainer.teacher.model)]
    np.testing.assert_allclose(logits[0], logits[1], rtol=0, atol=2e-5)   # S = W - A kron B: the same function
    np.testing.assert_array_equal(logits[2], logits[1])
    assert any(type(M).__name__ == "Doped" for M in trainer.model.matrices.values())
    bigger = base.with_(hidden=2 * base.hidden, structure="kp", compression=4, teacher=path)
    with pytest.raises(io.CheckpointError, match=r"another architecture than the student .*'hidden'"):
        Trainer(bigger, seed=0, corpus=ptb, progress=False)
    train(student, seed=0, out=tmp_path / "student", corpus=ptb, progress=False)
    again = student.with_(teacher=str(tmp_path / "student" / CHECKPOINT))
    with pytest.raises(io.CheckpointError, match="is not a dense model"):
        Trainer(again, seed=0, corpus=ptb, progress=False)


def test_kroneckerbert_embedding_from_scratch_and_from_a_teacher(ptb, tmp_path):
    """--vocab-structure kp --vocab-compression n: the embedding (and the tied softmax) as A (V, H / n)
    kron B (1, n), B one row shared by every word; from scratch a random one, from a teacher the
    nearest Kronecker product of the teacher's embedding. n must divide the width."""
    from dkp.compression.compress import nearest_kronecker
    base = get_config("transformer-tiny").with_(train_tokens=6_000, eval_tokens=1_000, epochs=1)
    V, H = len(ptb.vocab), base.hidden
    scratch = Trainer(base.with_(vocab_structure="kp", vocab_compression=4), seed=0, corpus=ptb, progress=False)
    E = scratch.model.matrices["embed"]
    assert isinstance(E, Kronecker) and E.factors == ((V, H // 4), (1, 4)) and "dec" not in scratch.model.matrices
    assert E.n_params == V * H // 4 + 4
    train(base, seed=2, out=tmp_path / "teacher", corpus=ptb, progress=False)
    path = str(tmp_path / "teacher" / CHECKPOINT)
    student = Trainer(base.with_(vocab_structure="kp", vocab_compression=8, teacher=path), seed=0, corpus=ptb,
                      progress=False)
    dense = student.model.matrices["embed"].to_dense()
    student.scheduled_changes(0)
    E = student.model.matrices["embed"]
    assert E.factors == ((V, H // 8), (1, 8))
    np.testing.assert_allclose(E.to_dense(), nearest_kronecker(dense, E.factors).to_dense(), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="a whole number > 1 dividing the width 32"):
        check_structure(base.with_(vocab_structure="kp", vocab_compression=3))


def test_a_distilgpt2_style_student_keeps_every_other_block_of_its_teacher(ptb, tmp_path):
    """--teacher PATH --teacher-blocks 1 --layers 1: a dense student of half the teacher's depth starts
    from the kept blocks (renumbered) and the teacher's embedding, positions and final LayerNorm, and
    is distilled from the whole teacher (its own model, with all its blocks)."""
    base = get_config("transformer-tiny").with_(train_tokens=6_000, eval_tokens=1_000, epochs=1)
    train(base, seed=4, out=tmp_path / "teacher", corpus=ptb, progress=False)
    path = str(tmp_path / "teacher" / CHECKPOINT)
    teacher = Trainer(base, seed=4, corpus=ptb, progress=False)
    load_checkpoint(teacher, path)
    half = base.with_(layers=1, teacher=path, teacher_blocks="1", distill_kl=1.0)
    trainer = Trainer(half, seed=0, corpus=ptb, progress=False)
    mine, theirs = trainer.model.params, teacher.model.params
    for k, v in mine.items():
        np.testing.assert_array_equal(v, theirs[k.replace("blocks.0.", "blocks.1.")], err_msg=k)
    trainer.scheduled_changes(0)
    assert len(trainer.teacher.model.blocks) == 2 and len(trainer.model.blocks) == 1
    for k, v in trainer.teacher.model.params.items():
        np.testing.assert_array_equal(v, theirs[k], err_msg=k)
    result = train(half, seed=0, out=tmp_path / "half", corpus=ptb, progress=False)
    assert np.isfinite(result["valid_ppl"][-1])
    ilkd = base.with_(structure="kp", compression=4, vocab_structure="kp", vocab_compression=4, teacher=path,
                      distill_kl=1.0, distill_hidden=1.0,
                      distill_embed=1.0, distill_attn=1.0)                 # KroneckerBERT's terms, all weighted 1
    student = Trainer(ilkd, seed=0, corpus=ptb, progress=False)
    assert "embedding-output weight 1, attention-score weight 1" in student.warmup.describe()
    student.scheduled_changes(0)
    x = np.asarray(ptb.train[:16 * 2], dtype=np.int64).reshape(16, 2)
    target = student.teacher.target(x, x, first=True)
    parts = student.model.forward(x, None, x, distill=target).cache["parts"]
    assert set(parts) == {"task", "kl", "hidden", "embed", "attn"} and parts["attn"] > 0 and parts["embed"] > 0
    with pytest.raises(ValueError, match="keeps 2 of the teacher's blocks, but the student has layers = 1"):
        check_structure(half.with_(teacher_blocks="0,1"))
    with pytest.raises(io.CheckpointError, match="has 2 blocks, numbered from 0"):
        Trainer(half.with_(teacher_blocks="2"), seed=0, corpus=ptb, progress=False)


def test_the_whole_model_report_counts_every_part(ptb):
    trainer = Trainer(CONFIG.with_(distill_kl=0.0), seed=0, corpus=ptb, progress=False)
    V, H = len(ptb.vocab), CONFIG.hidden
    dense = model_report(trainer.model)
    assert dense["n_params"] == sum(p.size for p in trainer.model.params.values()) == 2 * V * H + 8 * H * H + 4 * H + V
    assert dense["compression"] == 1.0 and dense["n_bytes"] == 4 * dense["n_params"]
    trainer.switch(trainer.warmup.convert(trainer.model, trainer.train_ids))
    small = model_report(trainer.model)
    assert small["n_params"] == sum(M.n_params for M in trainer.model.matrices.values()) + 4 * H + V
    assert small["compression"] == pytest.approx(dense["n_params"] / small["n_params"])
    assert small["compression"] > 5


@pytest.mark.parametrize("changes, message", [
    (dict(dense_warmup=0.0), "vocab_structure 'groupreduce' compresses trained matrices: it needs a teacher or "
                             "dense_warmup"),
    (dict(teacher="t.npz"), "two starts from a dense model: give one"),
    (dict(distill_attn=1.0), "they need model 'transformer'"),
    (dict(distill_embed=-1.0), "distill_embed and distill_attn must be >= 0"),
    (dict(dense_warmup=0.0, teacher="t.npz", structure="prune", vocab_structure="dense"), "does not apply to structure 'prune'"),
    (dict(dense_warmup=0.0, teacher="t.npz", structure="dense", vocab_structure="dense"), "teacher needs something to compress"),
    (dict(vocab_structure="hashing"), "vocab_structure must be one of"),
    (dict(vocab_compression=1.0), "vocab_compression must be > 1"),
    (dict(vocab_structure="dense", dense_warmup=0.0, distill_kl=1.0), "distillation needs a teacher"),
    (dict(distill_hidden=-1.0), "distill_kl and distill_hidden must be >= 0"),
    (dict(structure="dense", vocab_structure="dense"), "dense_warmup needs something to compress"),
    (dict(dense_warmup=0.5, lr_restart=True), "whole number of epochs of dense_warmup"),
    (dict(dense_warmup=0.0, lr_restart=True, vocab_structure="dense", distill_kl=0.0), "whole number of epochs"),
])
def test_teacher_settings_are_checked(changes, message):
    with pytest.raises(ValueError, match=message):
        check_structure(CONFIG.with_(**changes))


def test_whole_model_arms_are_valid_and_comparable():
    from dkp.study import catalog
    for name in catalog.WHOLE:
        configs = catalog.experiment_arms(name)
        for arm, config in configs.items():
            check_structure(config)
            check_structure(catalog.quick(config))
            base = catalog.SCALES["course"]["base"]
            if config.dense_warmup:   # a student: the dense model in full, then as many steps at the same rates
                assert config.dense_warmup == base.epochs and config.lr_restart, arm
                assert config.epochs - config.dense_warmup == base.epochs, arm
                assert config.decay_after == base.decay_after, arm
                assert config.with_(epochs=base.epochs, dense_warmup=0.0, lr_restart=False, structure="dense",
                                    compression=base.compression, doping=0.0, vocab_structure="dense",
                                    vocab_compression=1.0, distill_kl=0.0, distill_hidden=0.0,
                                    anneal_start=base.anneal_start, anneal_end=base.anneal_end,
                                    optimizer=base.optimizer) == configs["dense"], arm   # its teacher phase: `dense`
        assert catalog.default_out(name) == catalog.WHOLE_OUT and catalog.group(name) == catalog.WHOLE
        assert "dense" in configs and "teacher" not in configs
    whole = catalog.experiment_arms("whole-model")
    assert whole["doped-kp-teacher"].anneal_start == whole["doped-kp"].anneal_start + whole["dense"].epochs


def test_the_learning_rates_start_again_at_the_switch(ptb):
    config = CONFIG.with_(train_tokens=3_000, eval_tokens=500, epochs=3, dense_warmup=1.0, lr_decay=2.0,
                          decay_after=1, lr=0.5, vocab_structure="dense", lr_restart=True)
    assert train(config, corpus=ptb, progress=False)["lr"] == [0.5, 0.5, 0.25]    # restarted
    plain = train(config.with_(lr_restart=False), corpus=ptb, progress=False)["lr"]
    assert plain == [0.5, 0.25, 0.125]


def test_a_student_is_its_teachers_run_until_the_switch(ptb):
    # the whole-model experiment's claim: a student's dense phase is the dense arm's run, step for step
    dense = CONFIG.with_(structure="dense", compression=1.0, dense_warmup=0.0, vocab_structure="dense",
                         vocab_compression=1.0, epochs=1, train_tokens=4_000, eval_tokens=1_000)
    student = dense.with_(structure="kp", compression=4, dense_warmup=1.0, lr_restart=True, epochs=2,
                          vocab_structure="groupreduce", vocab_compression=6, distill_kl=1.0)
    a, b = train(dense, corpus=ptb, progress=False), train(student, corpus=ptb, progress=False)
    assert a["valid_ppl"][0] == b["valid_ppl"][0] and a["train_ppl"][0] == b["train_ppl"][0]


def test_no_arm_anneals_before_its_switch():
    """The runner's probe of the model right after the switch (study.probes.SwitchProbe) runs after
    the step's other scheduled changes; it sees the model the switch alone made because no arm's
    anneal window starts before its dense warm-up ends (where it starts at the switch, S is still
    dense there and the anneal changes nothing)."""
    from dkp.study import catalog
    checked = 0
    for name in catalog.ALL:
        for arm, config in catalog.experiment_arms(name).items():
            for c in (config, catalog.quick(config)):
                if c.dense_warmup and (c.doping or c.structure == "prune"):
                    assert c.anneal_start >= c.dense_warmup, (name, arm)
                    checked += 1
    assert checked >= 10   # the search's cma-init and the whole model's doped students
