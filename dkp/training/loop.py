"""The training loop: a language model (the LSTM or the transformer, `build_model`) trained over
windows of the training stream, the changes a config schedules between steps, checkpoints and resume.

One training step (`Trainer.train_step`): forward a (T, B) window with the state carried over from
the previous window (the LSTM's hidden state; the transformer's is None: each window is its own
context), backward (within the window: truncated BPTT for the LSTM), clip the global gradient norm, update at the step's learning
rate (`learning_rate`). The gradient clipped is that of the per-token mean loss times
`gradient_scale`: T for the LSTM, whose objective in Zaremba et al. is the cross-entropy summed
over the T timesteps and averaged over the batch (lr 1 and clip 5 then mean what they meant there);
1 for the transformer, trained on the mean per token as GPT-2 and nanoGPT train it (AdamW's lr
and a clip of 1 mean what they mean there, and the clip does not tighten with the window's length).

Between two updates come the changes the config schedules (`Trainer.scheduled_changes`), each a
named object of dkp.compression, in this order:

    DenseWarmup  (compression.teacher)  the switch from the dense warm-up to the compressed model:
                 it returns a Switch, which `Trainer.switch` applies (the model's matrices, a fresh
                 optimizer, the teacher): the one place where the three change
    Annealer     (compression.anneal)   the density of S, or the pruning masks, by the cubic schedule
    CMRSchedule  (compression.cmr)      co-matrix dropout's p from S's density

The changes due at step s are made after step s - 1's update and before step s's forward (at the
start of the step's window in `train_epoch`), so an epoch's evaluation and checkpoint see the model
its last update left. Observers (`hooks`: callables hook(trainer, step),
the probes of dkp.study and a caller's own) run after the step's changes, those in
`before_changes` before them; neither changes what is trained.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from dkp.compression.anneal import Annealer, needs_annealing
from dkp.compression.cmr import CMRSchedule, needs_cmr_schedule
from dkp.compression.structures import gate_factory, vocab_factory
from dkp.compression.teacher import DenseWarmup, distills
from dkp.core import io
from dkp.core.data import batchify, bptt_windows, load_corpus, n_windows
from dkp.core.model import LanguageModel
from dkp.core.optim import clip_global_norm, cosine_lr, make_optimizer, zaremba_lr
from dkp.core.transformer import TransformerLM
from dkp.training.checkpoint import (CHECKPOINT, load_checkpoint, load_model_arrays, load_teacher_checkpoint,
                                    save_checkpoint)
from dkp.training.configs import Config, check_model
from dkp.training.evaluate import evaluate, layer_report, mean_density, model_report

METRICS = "metrics.json"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def build_model(config: Config, vocab_size, seed, dtype=np.float32):
    """A fresh model of `config` (`config.model`: the LSTM or the transformer), its gate matrices
    from `dkp.compression.structures.gate_factory` (dense unless the config asks for a structure)."""
    check_model(config)
    if config.model == "transformer":
        return TransformerLM(vocab_size, config.hidden, config.layers, config.heads, config.block_size,
                             dropout=config.dropout, init_scale=config.init_scale, seed=seed, dtype=dtype,
                             tie=config.tie, gate_factory=gate_factory(config), vocab_factory=vocab_factory(config))
    return LanguageModel(vocab_size, config.hidden, config.layers, dropout=config.dropout,
                         init_scale=config.init_scale, seed=seed, dtype=dtype,
                         gate_factory=gate_factory(config), vocab_factory=vocab_factory(config))


def gradient_scale(config, window_length):
    """What the gradient of the per-token mean loss is multiplied by before the clip (see the module
    docstring): the window's length T for the LSTM (Zaremba's summed objective), 1 for the
    transformer (the mean)."""
    return window_length if config.model == "lstm" else 1.0


def learning_rate(config, epoch, step, steps_per_epoch):
    """The learning rate of `step` (in the 0-based `epoch`): Zaremba's, the same for a whole epoch,
    or a linear warm-up then cosine decay over the run's steps. With lr_restart the dense warm-up
    (a whole number of epochs) is a run of its own, and the schedule starts again at the switch."""
    switch = int(config.dense_warmup) if config.lr_restart else 0
    restart = switch if epoch >= switch else 0
    if config.lr_schedule == "cosine":    # the epochs of this schedule: the warm-up's, the rest, or all
        epochs = config.epochs - restart if restart else switch or config.epochs
        return cosine_lr(step - restart * steps_per_epoch, config.lr, config.warmup_steps, epochs * steps_per_epoch)
    return zaremba_lr(epoch - restart, config.lr, config.lr_decay, config.decay_after)


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
        self.teacher_model = None   # a teacher checkpoint's own model, frozen, when the config distills from it
        if config.teacher:                                  # the dense start the switch compresses at step 0
            teacher_config, arrays = load_teacher_checkpoint(self.model, config, config.teacher, len(self.corpus.vocab))
            if distills(config):
                self.teacher_model = build_model(teacher_config, len(self.corpus.vocab), seed)
                load_model_arrays(self.teacher_model, arrays, config.teacher)
        self.optimizer = self.new_optimizer(config.lr)
        self.rng = np.random.default_rng([seed, 1])  # dropout masks; the model's init uses `seed`
        self.steps_per_epoch = n_windows(batchify(self.train_ids, config.batch), config.bptt)
        # the changes the config schedules between steps (see the module docstring), None where it has none
        self.warmup = DenseWarmup(config, self.steps_per_epoch) if config.dense_warmup or config.teacher else None
        self.annealer = Annealer(config, self.steps_per_epoch) if needs_annealing(config) else None
        self.cmr_schedule = CMRSchedule(config) if needs_cmr_schedule(config) else None
        # observers, hook(trainer, step): those in `before_changes` see the model before the step's
        # scheduled changes, `hooks` (the caller's, e.g. diagnostics) after them, before the update
        self.before_changes, self.hooks = [], list(hooks)
        self.epoch, self.step = 0, 0
        self.last_loss = None  # the latest training loss, for hooks that trace it
        self.teacher = None    # a dkp.compression.teacher.Teacher, once the switch leaves one
        self.provenance = io.provenance()  # the command and commit this run started from
        self.history = {"train_ppl": [], "valid_ppl": [], "lr": [], "seconds": [], "words_per_sec": []}

    @property
    def changes(self):
        """The scheduled changes of this trainer's config, in the order the loop makes them."""
        return [c for c in (self.warmup, self.annealer, self.cmr_schedule) if c is not None]

    def find_hook(self, kind):
        """The first of this trainer's scheduled changes and observers that is a `kind` (e.g. the
        Annealer), or None."""
        return next((h for h in self.changes + self.before_changes + self.hooks if isinstance(h, kind)), None)

    # --- what changes between steps ----------------------------------------------------------------
    def scheduled_changes(self, step):
        """Make the changes the config schedules at `step`, in order: the switch from the dense
        warm-up, the anneal of S (or of the pruning masks), co-matrix dropout's p."""
        if self.warmup is not None and self.warmup.due(step):
            self.switch(self.make_switch())
        if self.annealer is not None:
            self.annealer.apply(self.model, step, self.optimizer)
        if self.cmr_schedule is not None:
            self.cmr_schedule.apply(self.model)

    def make_switch(self):
        """The dense warm-up's `Switch` of this trainer's model now (the teacher: the checkpoint's own
        model when there is one, else the dense model as it stands)."""
        return self.warmup.convert(self.model, self.train_ids, self.teacher_model)

    def switch(self, switch):
        """Apply a dense warm-up's `Switch`: the model's matrices become the compressed ones, the
        optimizer starts afresh (its state was the dense parameters') at the current learning
        rate, and the teacher, if any, starts teaching."""
        for name, M in switch.matrices.items():
            self.model.set_matrix(name, M)
        self.optimizer = self.new_optimizer(self.optimizer.lr)
        self.teacher = switch.teacher

    def new_optimizer(self, lr):
        c = self.config
        return make_optimizer(c.optimizer, lr, c.weight_decay)

    # --- one step ------------------------------------------------------------------------------
    def train_step(self, x, y, state, window):
        """One update on the window x (T, B) with targets y: forward (from `state`; the teacher's
        targets too), backward, clip, update. `window`: x's place in the epoch's stream (0 starts
        it). Returns the state to carry into the next window; TrainingDiverged if the loss is not
        finite."""
        model = self.model
        model.set_training(True)
        for M in model.matrices.values():
            M.begin_batch(self.rng)                          # co-matrix dropout's masks
        distill = None if self.teacher is None else self.teacher.target(x, y, first=window == 0)
        out = model.forward(x, state, y, rng=self.rng, distill=distill)
        self.last_loss = out.cache["parts"]["task"]         # the cross-entropy; the objective adds distillation
        if not math.isfinite(out.loss):
            raise TrainingDiverged(f"the training loss became {out.loss} at epoch {self.epoch + 1}, window "
                                   f"{window + 1} (step {self.step + 1}, lr {self.optimizer.lr:g}); try a lower "
                                   f"learning rate or gradient clip")
        grads = model.backward(out.cache, scale=gradient_scale(self.config, x.shape[0]))
        clip_global_norm(grads, self.config.clip)
        self.optimizer.step(model.params, grads)
        for M in model.matrices.values():
            M.after_update()                                 # e.g. zeros off a pruning mask
        self.step += 1
        return out.state

    # --- one epoch ---------------------------------------------------------------------------
    def train_epoch(self):
        """Train one pass over the training stream; returns (train perplexity, words/s, seconds, the
        learning rate of its last step)."""
        cfg, model = self.config, self.model
        stream = batchify(self.train_ids, cfg.batch)
        state = model.zero_state(cfg.batch)
        total, count, t0 = 0.0, 0, time.perf_counter()
        bar = _progress(n_windows(stream, cfg.bptt), f"epoch {self.epoch + 1}/{cfg.epochs}", self.progress)
        try:
            for i, (x, y) in enumerate(bptt_windows(stream, cfg.bptt)):
                for hook in self.before_changes:
                    hook(self, self.step)
                self.scheduled_changes(self.step)
                for hook in self.hooks:
                    hook(self, self.step)
                self.optimizer.lr = lr = learning_rate(cfg, self.epoch, self.step, self.steps_per_epoch)
                state = self.train_step(x, y, state, window=i)
                total += self.last_loss * x.size
                count += x.size
                if bar is not None:
                    bar.update(1)
                    if i % 10 == 0:
                        bar.set_postfix(ppl=f"{math.exp(total / count):.1f}",
                                        wps=f"{count / (time.perf_counter() - t0):.0f}")
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - t0
        return math.exp(total / count), count / seconds, seconds, lr

    def run(self):
        cfg = self.config
        if self.progress and self.epoch == 0:
            for name, M in self.model.matrices.items():
                print(f"{name}: {M.describe()}")
            for change in self.changes:
                if hasattr(change, "describe"):
                    print(f"  {change.describe()}")
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


def train(config: Config, seed=0, out=None, resume=False, corpus=None, progress=True, hooks=(), command=None):
    """Train `config` (optionally resuming from OUT/checkpoint.npz) and return its metrics dict.
    `command`: the command line to record, for a caller whose own (a worker process's) would not
    say how to train the same model again; default: this process's."""
    trainer = Trainer(config, seed=seed, out=out, corpus=corpus, progress=progress, hooks=hooks)
    if resume:
        if not out:
            raise ValueError("resume needs an output directory holding checkpoint.npz (--out)")
        trainer.load(os.path.join(out, CHECKPOINT))
        if trainer.seed != seed:
            raise ValueError(f"--seed {seed} differs from the checkpoint's seed {trainer.seed}")
    if command is not None:
        trainer.provenance["command"] = command
    return trainer.run()
