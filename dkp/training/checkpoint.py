"""Checkpoints: a trainer's model, optimizer, RNG and history in one atomic .npz (no pickle), and
loading them back with every name and shape checked."""
from __future__ import annotations

from dkp.core import io
from dkp.training.configs import normalized

CHECKPOINT = "checkpoint.npz"


def save_checkpoint(trainer, path):
    """Write `trainer`'s parameters, buffers, optimizer state, RNG and history to `path` (atomic)."""
    arrays = {f"param.{k}": v for k, v in trainer.model.params.items()}
    for prefix, M in trainer.model.matrices.items():
        arrays.update({f"buffer.{prefix}.{k}": v for k, v in M.buffers.items()})
    arrays.update({f"opt.{k}": v for k, v in trainer.optimizer.state_arrays().items()})
    for hook in trainer.hooks:  # e.g. the teacher a dense warm-up left behind
        if hasattr(hook, "state_arrays"):
            arrays.update({f"hook.{type(hook).__name__}.{k}": v for k, v in hook.state_arrays(trainer).items()})
    meta = {"config": trainer.config.to_dict(), "seed": trainer.seed, "epoch": trainer.epoch,
            "step": trainer.step, "rng": trainer.rng.bit_generator.state, "history": trainer.history,
            "vocab_size": len(trainer.corpus.vocab)}
    io.save_npz(path, arrays, meta)


def load_checkpoint(trainer, path, loaded=None):
    """Put the checkpoint at `path` into `trainer`; its config must equal the trainer's but for `epochs`.
    `loaded`: the (arrays, meta) of `io.load_npz(path)` when the caller has read them already."""
    arrays, meta = loaded if loaded is not None else io.load_npz(path)
    mine, theirs = trainer.config.to_dict(), normalized(meta.get("config", {}))
    mine.pop("epochs"), theirs.pop("epochs", None)
    if mine != theirs:
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        raise io.CheckpointError(f"checkpoint {path!r} was made with a different config "
                                 f"(field: (checkpoint, now)): {diff}")
    for hook in trainer.hooks:  # e.g. a dense warm-up the checkpoint's model has already left
        if hasattr(hook, "restore"):
            prefix = f"hook.{type(hook).__name__}."
            try:
                hook.restore(trainer, meta["step"], {k[len(prefix):]: v for k, v in arrays.items()
                                                     if k.startswith(prefix)})
            except KeyError as e:
                raise io.CheckpointError(f"checkpoint {path!r}: {e.args[0]}") from None
    load_model_arrays(trainer.model, arrays, path)
    trainer.optimizer.load_state_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("opt.")})
    trainer.seed, trainer.epoch, trainer.step = meta["seed"], meta["epoch"], meta["step"]
    trainer.rng.bit_generator.state = meta["rng"]
    trainer.history = meta["history"]


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
