"""The training loop: SGD over BPTT windows, evaluation, checkpoints and resume.

One training step: forward a (T, B) window with the hidden state carried over from the previous
window, backward (truncated BPTT), clip the global gradient norm, update. Zaremba et al.'s objective
is the cross-entropy summed over the T timesteps and averaged over the batch, so the gradient of the
per-token mean loss is scaled by T before clipping: lr 1 and clip 5 then mean what they meant there.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from . import io
from .configs import Config
from .data import batchify, bptt_windows, load_corpus, n_windows
from .doping import Annealer, CMRSchedule, DenseWarmup, needs_annealing, needs_cmr_schedule
from .model import LanguageModel
from .optim import clip_global_norm, make_optimizer, zaremba_lr

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def build_model(config: Config, vocab_size, seed, dtype=np.float32):
    from .structures import gate_factory  # structured gate matrices (dense unless config asks)
    return LanguageModel(vocab_size, config.hidden, config.layers, dropout=config.dropout,
                         init_scale=config.init_scale, seed=seed, dtype=dtype,
                         gate_factory=gate_factory(config))


def _head(ids, n):
    return ids[:n] if n else ids


def evaluate(model, ids, batch, bptt):
    """Perplexity of `ids` (a 1-D token stream), hidden state carried across windows, no dropout."""
    model.set_training(False)
    stream = batchify(ids, batch)
    state = model.zero_state(batch)
    total, count = 0.0, 0
    for x, y in bptt_windows(stream, bptt):
        loss, state, _ = model.forward(x, y, state)
        total += loss * x.size
        count += x.size
    return math.exp(total / count)


class Trainer:
    """Holds a model, its optimizer and data; `run` trains to `config.epochs`, checkpointing each epoch."""

    def __init__(self, config: Config, seed=0, out=None, corpus=None, progress=True, hooks=()):
        self.config, self.seed, self.out, self.progress = config, seed, out, progress
        self.corpus = corpus if corpus is not None else load_corpus(level=config.level)
        self.train_ids = _head(self.corpus.train, config.train_tokens)
        self.valid_ids = _head(self.corpus.valid, config.eval_tokens)
        self.test_ids = _head(self.corpus.test, config.eval_tokens)
        self.model = build_model(config, len(self.corpus.vocab), seed)
        self.optimizer = make_optimizer(config.optimizer, config.lr)
        self.rng = np.random.default_rng([seed, 1])  # dropout masks; the model's init uses `seed`
        self.steps_per_epoch = n_windows(batchify(self.train_ids, config.batch), config.bptt)
        # hooks: callables hook(trainer, step) run before each update (schedules, diagnostics), in
        # this order: the switch from a dense warm-up, the anneal, the schedule of CMR's p, the rest
        self.warmup = DenseWarmup(config, self.steps_per_epoch) if config.dense_warmup else None
        self.annealer = Annealer(config, self.steps_per_epoch) if needs_annealing(config) else None
        schedules = [self.warmup, self.annealer, CMRSchedule(config) if needs_cmr_schedule(config) else None]
        self.hooks = [h for h in schedules if h is not None] + list(hooks)
        self.epoch, self.step = 0, 0
        self.last_loss = None  # the latest training loss, for hooks that trace it
        self.provenance = io.provenance()  # the command and commit this run started from
        self.history = {"train_ppl": [], "valid_ppl": [], "lr": [], "seconds": [], "words_per_sec": []}

    # --- one epoch ---------------------------------------------------------------------------
    def train_epoch(self):
        cfg, model = self.config, self.model
        lr = zaremba_lr(self.epoch, cfg.lr, cfg.lr_decay, cfg.decay_after)
        self.optimizer.lr = lr
        stream = batchify(self.train_ids, cfg.batch)
        state = model.zero_state(cfg.batch)
        total, count, t0 = 0.0, 0, time.perf_counter()
        bar = _progress(n_windows(stream, cfg.bptt), f"epoch {self.epoch + 1}/{cfg.epochs}", self.progress)
        for i, (x, y) in enumerate(bptt_windows(stream, cfg.bptt)):
            for hook in self.hooks:
                hook(self, self.step)
            model.set_training(True)
            for layer in model.layers:
                layer.W.begin_batch(self.rng)
            loss, state, cache = model.forward(x, y, state, rng=self.rng)
            self.last_loss = loss
            if not math.isfinite(loss):
                if bar is not None:
                    bar.close()
                raise TrainingDiverged(f"the training loss became {loss} at epoch {self.epoch + 1}, "
                                       f"window {i + 1} (step {self.step + 1}, lr {lr:g}); try a lower "
                                       f"learning rate or gradient clip")
            grads = model.backward(cache, scale=x.shape[0])
            clip_global_norm(grads, cfg.clip)
            self.optimizer.step(model.params, grads)
            for layer in model.layers:
                layer.W.after_update()
            self.step += 1
            total += loss * x.size
            count += x.size
            if bar is not None:
                bar.update(1)
                if i % 10 == 0:
                    bar.set_postfix(ppl=f"{math.exp(total / count):.1f}",
                                    wps=f"{count / (time.perf_counter() - t0):.0f}")
        seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        return math.exp(total / count), count / seconds, seconds, lr

    def run(self):
        cfg = self.config
        if self.progress and self.epoch == 0:
            for row in layer_report(self.model):
                print(f"LSTM layer {row['layer']}: {self.model.layers[row['layer']].W.describe()}")
            if self.annealer:
                print(f"  annealed to {cfg.compression:g}x between epochs {cfg.anneal_start:g} and {cfg.anneal_end:g}")
        while self.epoch < cfg.epochs:
            train_ppl, wps, seconds, lr = self.train_epoch()
            valid_ppl = evaluate(self.model, self.valid_ids, cfg.eval_batch, cfg.bptt)
            self.epoch += 1
            for k, v in zip(("train_ppl", "valid_ppl", "lr", "seconds", "words_per_sec"),
                            (train_ppl, valid_ppl, lr, seconds, wps)):
                self.history[k].append(v)
            if self.annealer:
                self.history.setdefault("density", []).append(mean_density(self.model))
            if self.progress:
                print(f"epoch {self.epoch}: train ppl {train_ppl:.2f}  valid ppl {valid_ppl:.2f}  "
                      f"lr {lr:g}  {wps:.0f} words/s", flush=True)
            if self.out:
                self.save(os.path.join(self.out, CHECKPOINT))
        return self.finish()

    def finish(self):
        cfg = self.config
        metrics = {
            "config": cfg.to_dict(),
            "seed": self.seed,
            "epochs": self.epoch,
            "optimizer": {"name": cfg.optimizer, "lr": cfg.lr, "clip": cfg.clip},
            **self.history,
            "final_valid_ppl": evaluate(self.model, self.valid_ids, cfg.eval_batch, cfg.bptt),
            "test_ppl": evaluate(self.model, self.test_ids, cfg.eval_batch, cfg.bptt),
            "mean_words_per_sec": float(np.mean(self.history["words_per_sec"])) if self.epoch else None,
            "layers": layer_report(self.model),
            **self.provenance,
        }
        if self.out:
            io.save_json(os.path.join(self.out, METRICS), metrics)
        return metrics

    # --- checkpoints -------------------------------------------------------------------------
    def save(self, path):
        arrays = {f"param.{k}": v for k, v in self.model.params.items()}
        for l, layer in enumerate(self.model.layers):
            arrays.update({f"buffer.lstm{l}.{k}": v for k, v in layer.W.buffers.items()})
        arrays.update({f"opt.{k}": v for k, v in self.optimizer.state_arrays().items()})
        meta = {"config": self.config.to_dict(), "seed": self.seed, "epoch": self.epoch, "step": self.step,
                "rng": self.rng.bit_generator.state, "history": self.history,
                "vocab_size": len(self.corpus.vocab)}
        io.save_npz(path, arrays, meta)

    def load(self, path):
        arrays, meta = io.load_npz(path)
        mine, theirs = self.config.to_dict(), dict(meta.get("config", {}))
        mine.pop("epochs"), theirs.pop("epochs", None)
        if mine != theirs:
            diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
            raise io.CheckpointError(f"checkpoint {path!r} was made with a different config "
                                     f"(field: (checkpoint, now)): {diff}")
        if self.warmup and meta["step"] > self.warmup.step:
            self.warmup.convert(self)  # the checkpoint holds the doped model the warm-up became
        load_model_arrays(self.model, arrays, path)
        self.optimizer.load_state_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("opt.")})
        self.seed, self.epoch, self.step = meta["seed"], meta["epoch"], meta["step"]
        self.rng.bit_generator.state = meta["rng"]
        self.history = meta["history"]


def load_model_arrays(model, arrays, path="checkpoint"):
    """Put a checkpoint's buffers and parameters into `model`, checking names and shapes."""
    for l, layer in enumerate(model.layers):
        prefix = f"buffer.lstm{l}."
        buffers = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        if buffers or layer.W.buffers:
            layer.W.load_buffers(buffers)
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


def mean_density(model):
    """Mean stored fraction of the doped S (or of the pruned weights) over the LSTM layers."""
    values = [W.density if hasattr(W, "density") else 1.0 - W.sparsity
              for W in (layer.W for layer in model.layers) if hasattr(W, "density") or hasattr(W, "sparsity")]
    return float(np.mean(values)) if values else None


def layer_report(model):
    """Per LSTM layer: kind, parameters, bytes and compression against the dense gate matrix."""
    out = []
    for l, layer in enumerate(model.layers):
        W = layer.W
        m, n = W.shape
        row = {"layer": l, "kind": type(W).__name__, "shape": [m, n], "n_params": W.n_params,
               "n_bytes": W.n_bytes, "compression": m * n / W.n_params,
               "byte_compression": m * n * W.dtype.itemsize / W.n_bytes}
        if hasattr(W, "structured"):
            row.update(structured=type(W.structured).__name__, density_of_S=W.density)
        out.append(row)
    return out


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="batch", leave=False, mininterval=1.0, dynamic_ncols=True)


def train(config: Config, seed=0, out=None, resume=False, corpus=None, progress=True, hooks=()):
    """Train `config` (optionally resuming from OUT/checkpoint.npz) and return its metrics dict."""
    trainer = Trainer(config, seed=seed, out=out, corpus=corpus, progress=progress, hooks=hooks)
    if resume:
        if not out:
            raise ValueError("resume needs an output directory holding checkpoint.npz (--out)")
        trainer.load(os.path.join(out, CHECKPOINT))
        if trainer.seed != seed:
            raise ValueError(f"--seed {seed} differs from the checkpoint's seed {trainer.seed}")
    return trainer.run()
