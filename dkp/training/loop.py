"""The training loop: SGD over BPTT windows, with hooks between steps, checkpoints and resume.

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

from dkp.compression.anneal import anneal_hooks
from dkp.compression.structures import gate_factory
from dkp.core import io
from dkp.core.data import batchify, bptt_windows, load_corpus, n_windows
from dkp.core.model import LanguageModel
from dkp.core.optim import clip_global_norm, make_optimizer, zaremba_lr
from dkp.training.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from dkp.training.configs import Config
from dkp.training.evaluate import evaluate, layer_report, mean_density, model_report

METRICS = "metrics.json"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def build_model(config: Config, vocab_size, seed, dtype=np.float32):
    """A fresh model of `config`, its gate matrices from `dkp.compression.structures.gate_factory`
    (dense unless the config asks for a structure)."""
    return LanguageModel(vocab_size, config.hidden, config.layers, dropout=config.dropout,
                         init_scale=config.init_scale, seed=seed, dtype=dtype,
                         gate_factory=gate_factory(config))


def _head(ids, n):
    return ids[:n] if n else ids


class Trainer:
    """Holds a model, its optimizer and data; `run` trains to `config.epochs`, checkpointing each epoch."""

    def __init__(self, config: Config, seed=0, out=None, corpus=None, progress=True, hooks=(), echo=None):
        """progress: the per-batch bar and a line per epoch on stdout; echo: a callable that
        receives the line per epoch instead (an experiment's worker sends it to its terminal)."""
        self.config, self.seed, self.out, self.progress, self.echo = config, seed, out, progress, echo
        self.corpus = corpus if corpus is not None else load_corpus(level=config.level)
        self.train_ids = _head(self.corpus.train, config.train_tokens)
        self.valid_ids = _head(self.corpus.valid, config.eval_tokens)
        self.test_ids = _head(self.corpus.test, config.eval_tokens)
        self.model = build_model(config, len(self.corpus.vocab), seed)
        self.optimizer = make_optimizer(config.optimizer, config.lr)
        self.rng = np.random.default_rng([seed, 1])  # dropout masks; the model's init uses `seed`
        self.steps_per_epoch = n_windows(batchify(self.train_ids, config.batch), config.bptt)
        # hooks: callables hook(trainer, step) run before each update: first those the config asks
        # for (dkp.compression.anneal: dense warm-up, anneal, CMR's p), then the caller's (diagnostics)
        self.hooks = anneal_hooks(config, self.steps_per_epoch) + list(hooks)
        self.epoch, self.step = 0, 0
        self.last_loss = None  # the latest training loss, for hooks that trace it
        self.teacher = None    # a dkp.compression.teacher.Teacher, once a dense warm-up leaves one
        self.provenance = io.provenance()  # the command and commit this run started from
        self.history = {"train_ppl": [], "valid_ppl": [], "lr": [], "seconds": [], "words_per_sec": []}

    def find_hook(self, kind):
        """The first of this trainer's hooks that is a `kind` (e.g. the Annealer), or None."""
        return next((h for h in self.hooks if isinstance(h, kind)), None)

    # --- one epoch ---------------------------------------------------------------------------
    def train_epoch(self):
        cfg, model = self.config, self.model
        restart = int(cfg.dense_warmup) if cfg.lr_restart and self.epoch >= cfg.dense_warmup else 0
        lr = zaremba_lr(self.epoch - restart, cfg.lr, cfg.lr_decay, cfg.decay_after)
        self.optimizer.lr = lr
        stream = batchify(self.train_ids, cfg.batch)
        state = model.zero_state(cfg.batch)
        total, count, t0 = 0.0, 0, time.perf_counter()
        bar = _progress(n_windows(stream, cfg.bptt), f"epoch {self.epoch + 1}/{cfg.epochs}", self.progress)
        for i, (x, y) in enumerate(bptt_windows(stream, cfg.bptt)):
            for hook in self.hooks:
                hook(self, self.step)
            model.set_training(True)
            for M in model.matrices.values():
                M.begin_batch(self.rng)
            distill = None if self.teacher is None else self.teacher.target(x, y, first=i == 0)
            _, objective, state, cache = model.forward(x, state, y, rng=self.rng, distill=distill)
            loss = cache["parts"]["task"]  # the cross-entropy; the objective adds distillation terms
            self.last_loss = loss
            if not math.isfinite(objective):
                if bar is not None:
                    bar.close()
                raise TrainingDiverged(f"the training loss became {objective} at epoch {self.epoch + 1}, "
                                       f"window {i + 1} (step {self.step + 1}, lr {lr:g}); try a lower "
                                       f"learning rate or gradient clip")
            grads = model.backward(cache, scale=x.shape[0])
            clip_global_norm(grads, cfg.clip)
            self.optimizer.step(model.params, grads)
            for M in model.matrices.values():
                M.after_update()
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
            for hook in self.hooks:
                if hasattr(hook, "describe"):
                    print(f"  {hook.describe()}")
        while self.epoch < cfg.epochs:
            train_ppl, wps, seconds, lr = self.train_epoch()
            valid_ppl = evaluate(self.model, self.valid_ids, cfg.eval_batch, cfg.bptt)
            self.epoch += 1
            for k, v in zip(("train_ppl", "valid_ppl", "lr", "seconds", "words_per_sec"),
                            (train_ppl, valid_ppl, lr, seconds, wps)):
                self.history[k].append(v)
            density = mean_density(self.model)
            if density is not None:
                self.history.setdefault("density", []).append(density)
            line = (f"epoch {self.epoch}/{cfg.epochs}: train ppl {train_ppl:.2f}  valid ppl {valid_ppl:.2f}  "
                    f"lr {lr:g}  {wps:.0f} words/s")
            if self.echo is not None:
                self.echo(line)
            elif self.progress:
                print(line, flush=True)
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
            # the last epoch's validation perplexity is the final one: nothing changes the model after it
            "final_valid_ppl": (self.history["valid_ppl"][-1] if self.history["valid_ppl"]
                                else evaluate(self.model, self.valid_ids, cfg.eval_batch, cfg.bptt)),
            "test_ppl": evaluate(self.model, self.test_ids, cfg.eval_batch, cfg.bptt),
            "mean_words_per_sec": float(np.mean(self.history["words_per_sec"])) if self.epoch else None,
            "layers": layer_report(self.model),
            "model": model_report(self.model),
            **self.provenance,
        }
        if self.out:
            io.save_json(os.path.join(self.out, METRICS), metrics)
        return metrics

    # --- checkpoints (dkp.training.checkpoint) ----------------------------------------------------
    def save(self, path):
        save_checkpoint(self, path)

    def load(self, path):
        load_checkpoint(self, path)


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
