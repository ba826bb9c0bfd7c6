"""Checkpoints: a trainer's model, optimizer, RNG, history and teacher in one atomic .npz (no
pickle), and loading them back with every name and shape checked; a checkpoint taken after a dense
warm-up's switch makes the switch again before its arrays load."""
from __future__ import annotations

import re

from dkp.compression.structures import teacher_blocks
from dkp.core import io
from dkp.training.configs import Config, normalized

CHECKPOINT = "checkpoint.npz"
TEACHER = "hook.DenseWarmup.teacher."   # the teacher's parameters, under the prefix checkpoints have always used


def save_checkpoint(trainer, path):
    """Write `trainer`'s parameters, buffers, optimizer state, RNG and history to `path` (atomic)."""
    arrays = {f"param.{k}": v for k, v in trainer.model.params.items()}
    for prefix, M in trainer.model.matrices.items():
        arrays.update({f"buffer.{prefix}.{k}": v for k, v in M.buffers.items()})
    arrays.update({f"opt.{k}": v for k, v in trainer.optimizer.state_arrays().items()})
    if trainer.teacher is not None:  # the frozen dense model a dense warm-up's switch left behind
        arrays.update({f"{TEACHER}{k}": v for k, v in trainer.teacher.model.params.items()})
    meta = {"config": trainer.config.to_dict(), "seed": trainer.seed, "epoch": trainer.epoch,
            "step": trainer.step, "rng": trainer.rng.bit_generator.state, "history": trainer.history,
            "vocab_size": len(trainer.corpus.vocab)}
    io.save_npz(path, arrays, meta)


def load_checkpoint(trainer, path, loaded=None):
    """Put the checkpoint at `path` into `trainer`; its config must equal the trainer's but for `epochs`
    (which may grow: train on; not under a cosine schedule, whose every step depends on them).
    `loaded`: the (arrays, meta) of `io.load_npz(path)` when the caller has read them already."""
    arrays, meta = loaded if loaded is not None else io.load_npz(path)
    mine, theirs = trainer.config.to_dict(), normalized(meta.get("config", {}))
    if mine["lr_schedule"] == "cosine" and theirs.get("epochs") != mine["epochs"]:
        raise io.CheckpointError(f"checkpoint {path!r} was made with epochs = {theirs.get('epochs')}, and a cosine "
                                 f"learning-rate schedule spans the run's epochs: resume it with the same epochs "
                                 f"(now {mine['epochs']})")
    mine.pop("epochs"), theirs.pop("epochs", None)
    if mine != theirs:
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        raise io.CheckpointError(f"checkpoint {path!r} was made with a different config "
                                 f"(field: (checkpoint, now)): {diff}")
    if trainer.warmup is not None and meta["step"] > trainer.warmup.step:
        # taken after the switch: the checkpoint holds the compressed model (and its teacher)
        trainer.switch(trainer.make_switch())
        if trainer.teacher is not None:
            load_teacher_arrays(trainer.teacher.model, arrays, path)
    load_model_arrays(trainer.model, arrays, path)
    trainer.optimizer.load_state_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("opt.")})
    trainer.seed, trainer.epoch, trainer.step = meta["seed"], meta["epoch"], meta["step"]
    trainer.rng.bit_generator.state = meta["rng"]
    trainer.history = meta["history"]


def load_teacher_arrays(teacher, arrays, path="checkpoint"):
    """Put a checkpoint's teacher parameters into `teacher` (the model the switch froze)."""
    params = teacher.params
    missing = sorted(set(params) - {k[len(TEACHER):] for k in arrays if k.startswith(TEACHER)})
    if missing:
        raise io.CheckpointError(f"checkpoint {path!r}: the checkpoint lacks the teacher's parameters {missing}")
    for k, p in params.items():
        p[...] = arrays[f"{TEACHER}{k}"]


# Checkpoints written before the embedding and decoder became matrices named them so.
LEGACY_NAMES = {"param.embed": "param.embed.W", "param.dec_W": "param.dec.W"}


def load_model_arrays(model, arrays, path="checkpoint"):
    """Put a checkpoint's buffers and parameters into `model`, checking names and shapes."""
    arrays = {LEGACY_NAMES.get(k, k): v for k, v in arrays.items()}
    for name, M in model.matrices.items():
        prefix = f"buffer.{name}."
        buffers = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        if buffers or M.buffers:
            try:
                M.load_buffers(buffers)
            except (KeyError, ValueError) as e:
                raise io.CheckpointError(f"checkpoint {path!r}: the buffers of {name!r} do not fit the "
                                         f"model: {e}") from None
    params = model.params
    missing = sorted(set(params) - {k[6:] for k in arrays if k.startswith("param.")})
    if missing:
        raise io.CheckpointError(f"checkpoint {path!r} lacks parameters {missing}")
    for name, p in params.items():
        a = arrays[f"param.{name}"]
        if a.shape != p.shape:
            raise io.CheckpointError(f"checkpoint {path!r}: parameter {name!r} has shape {a.shape}, "
                                     f"but the model expects {p.shape}")
        p[...] = a


# What a student and its teacher checkpoint must share: the dense model's architecture and data.
ARCHITECTURE = ("model", "layers", "hidden", "heads", "block_size", "tie", "level")
BLOCK = re.compile(r"^(blocks\.|lstm)(\d+)(.*)$")     # a transformer block's or an LSTM layer's parameter


def load_teacher_checkpoint(model, config, path, vocab_size):
    """Put the trained dense model of the checkpoint at `path` (a run of its config's full recipe)
    into `model`, the dense model a student of `config` starts from before the switch compresses it;
    with `config.teacher_blocks`, only those blocks (an LSTM's layers), renumbered in order. The
    checkpoint must hold a dense model of the student's architecture and vocabulary; the error names
    what differs. Returns the teacher's own (config, {name: array}) for the frozen teacher."""
    arrays, meta = io.load_npz(path)
    theirs = normalized(meta.get("config", {}))
    compressed = {k: theirs.get(k) for k in ("structure", "vocab_structure") if theirs.get(k, "dense") != "dense"}
    compressed.update({k: theirs[k] for k in ("dense_warmup", "teacher") if theirs.get(k)})
    if compressed:
        raise io.CheckpointError(f"teacher {path!r} is not a dense model (its config: {compressed}); a teacher is "
                                 f"a dense model trained by its config's full recipe")
    kept, mine = teacher_blocks(config), config.to_dict()
    diff = {k: (theirs.get(k), mine[k]) for k in ARCHITECTURE if theirs.get(k) != mine[k]
            and not (k == "layers" and kept is not None)}
    if meta.get("vocab_size") != vocab_size:
        diff["vocab_size"] = (meta.get("vocab_size"), vocab_size)
    if diff:
        raise io.CheckpointError(f"teacher {path!r} has another architecture than the student "
                                 f"(field: (teacher, student)): {diff}")
    if kept is not None and max(kept) >= theirs["layers"]:
        raise io.CheckpointError(f"teacher_blocks {config.teacher_blocks!r}: the teacher {path!r} has "
                                 f"{theirs['layers']} blocks, numbered from 0")
    params = {k[6:]: v for k, v in arrays.items() if k.startswith("param.")}
    if kept is not None:                              # the kept blocks, renumbered 0, 1, ... in their order
        picked = {}
        for k, v in params.items():
            m = BLOCK.match(k)
            if m is None:
                picked[k] = v
            elif int(m.group(2)) in kept:
                picked[f"{m.group(1)}{kept.index(int(m.group(2)))}{m.group(3)}"] = v
        params = picked
    load_model_arrays(model, {f"param.{k}": v for k, v in params.items()}, path)
    return Config.from_dict(meta["config"]), {k: v for k, v in arrays.items() if k.startswith("param.")}
