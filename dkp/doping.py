"""Doping in training: annealing the density of S (and of pruning masks), the schedule of the
co-matrix dropout probability, the switch from a dense warm-up to a doped model, and the co-matrix
adaptation (CMA) diagnostics. Co-matrix dropout itself lives in `dkp.weights.doped`.

All are hooks of the training loop: callables hook(trainer, step) run before each update.
"""
from __future__ import annotations

import numpy as np

from .data import batchify, bptt_windows
from .schedules import cubic_schedule
from .shapes import pruning_sparsity
from .structures import doped_from_dense
from .weights import Doped, Pruned, stack_caches


class Annealer:
    """Moves every doped layer's density of S from 1 to `config.doping`, and every pruned layer's
    sparsity from 0 to its compression target, along the cubic schedule between epochs
    `anneal_start` and `anneal_end`, re-masking by magnitude every `anneal_every` steps; the masks
    are frozen after the window. Adam's moments of S are re-indexed to the kept entries. With
    `config.anneal_s` False, S keeps its starting density (the control of an anneal)."""

    def __init__(self, config, steps_per_epoch):
        self.config = config
        # steps are 0-based: epoch e ends with step e * steps_per_epoch - 1, where the target is reached
        self.start = int(round(config.anneal_start * steps_per_epoch))
        self.end = int(round(config.anneal_end * steps_per_epoch)) - 1
        if self.end <= self.start:
            raise ValueError(f"anneal_end ({config.anneal_end}) must be after anneal_start ({config.anneal_start}) "
                             f"by at least one step")
        self.every = max(1, int(config.anneal_every))

    def density_at(self, step):
        return cubic_schedule(step, self.start, self.end, 1.0, self.config.doping)

    def __call__(self, trainer, step):
        if step < self.start or step > self.end or ((step - self.start) % self.every and step != self.end):
            return
        for l, layer in enumerate(trainer.model.layers):
            W = layer.W
            if isinstance(W, Doped) and self.config.anneal_s:
                target = self.density_at(step)
                if round(target * W.shape[0] * W.shape[1]) < W.nnz:
                    keep = W.set_density(target)
                    if hasattr(trainer.optimizer, "reindex"):
                        trainer.optimizer.reindex(f"lstm{l}.S", keep)
            elif isinstance(W, Pruned):
                final = pruning_sparsity(W.shape, self.config.compression)
                target = cubic_schedule(step, self.start, self.end, 0.0, final)
                if target > W.sparsity:
                    W.set_sparsity(target)


def needs_annealing(config):
    return config.doping > 0 or config.structure == "prune"


# --- the co-matrix dropout probability along the anneal --------------------------------------------
def cmr_probability(config, density):
    """The co-matrix dropout probability while S has `density`, by `config.cmr_schedule`:
    "constant" cmr_p; "threshold" cmr_p once density <= cmr_threshold, else 0; "density" cmr_p *
    (1 - density) / (1 - doping), rising from 0 (S dense) to cmr_p (S at its final density)."""
    p = config.cmr_p
    if config.cmr_schedule == "constant":
        return p
    if config.cmr_schedule == "threshold":
        return p if density <= config.cmr_threshold else 0.0
    if config.cmr_schedule == "density":
        return p * min(1.0, max(0.0, (1.0 - density) / (1.0 - config.doping)))
    raise ValueError(f"cmr_schedule must be constant, threshold or density, got {config.cmr_schedule!r}")


class CMRSchedule:
    """A hook that sets each doped layer's co-matrix dropout probability from its density of S
    (`cmr_probability`); it runs after the annealer, so it sees this step's density."""

    def __init__(self, config):
        self.config = config

    def __call__(self, trainer, step):
        for _, W in doped_layers(trainer.model):
            W.cmr_p = cmr_probability(self.config, W.density)


def needs_cmr_schedule(config):
    return config.doping > 0 and config.cmr_p > 0 and config.cmr_schedule != "constant"


# --- from a dense warm-up to a doped model -------------------------------------------------------
class DenseWarmup:
    """A hook that, at the first step of epoch `config.dense_warmup`, replaces every LSTM layer's
    dense gate matrix W by its nearest structured matrix plus S = W - structured (S dense), so
    the doped model starts where the dense one stands. The optimizer starts afresh (its state
    was for the dense parameters) at the current learning rate."""

    def __init__(self, config, steps_per_epoch):
        self.config = config
        self.step = int(round(config.dense_warmup * steps_per_epoch))

    def convert(self, trainer):
        from .optim import make_optimizer
        for layer in trainer.model.layers:
            layer.W = doped_from_dense(self.config, layer.W.to_dense())
        lr = trainer.optimizer.lr
        trainer.optimizer = make_optimizer(self.config.optimizer, lr)

    def __call__(self, trainer, step):
        if step == self.step:
            self.convert(trainer)


# --- co-matrix adaptation diagnostics ------------------------------------------------------------
def doped_layers(model):
    return [(l, layer.W) for l, layer in enumerate(model.layers) if isinstance(layer.W, Doped)]


def doped_density(model):
    """Mean density of S over the doped layers (None without any)."""
    layers = doped_layers(model)
    return float(np.mean([W.density for _, W in layers])) if layers else None


def perplexity(model, ids, batch, bptt, s_enabled=True):
    """Perplexity of `ids` with S switched on or off in every doped layer (no dropout)."""
    from .train import evaluate
    layers = doped_layers(model)
    saved = [W.s_enabled for _, W in layers]
    try:
        for _, W in layers:
            W.s_enabled = s_enabled
        return evaluate(model, ids, batch, bptt)
    finally:
        for (_, W), s in zip(layers, saved):
            W.s_enabled = s


def branch_statistics(model, ids, batch, bptt):
    """Per doped layer, over every (timestep, row) input xh of `ids`: the mean norms of the two
    branch outputs ||structured(xh)|| and ||S xh||, the mean cosine between them, and the share of
    the gate pre-activation's energy carried by S: mean ||S xh||^2 / (||struct||^2 + ||S xh||^2)."""
    layers = doped_layers(model)
    if not layers:
        return []
    model.set_training(False)
    stream = batchify(ids, batch)
    state = model.zero_state(batch)
    xs = {l: [] for l, _ in layers}
    for x, y in bptt_windows(stream, bptt):
        _, state, cache = model.forward(x, y, state)
        for l, _ in layers:
            xs[l].append(stack_caches([s[0] for s in cache["steps"][l]])[0])  # (T*B, in + H)
    out = []
    for l, W in layers:
        xh = np.concatenate(xs[l]).astype(np.float64)
        a = W.structured_forward(xh.astype(W.dtype)).astype(np.float64)   # (N, 4H)
        s = W.sparse_forward(xh.astype(W.dtype)).astype(np.float64)       # (N, 4H)
        na, ns = np.linalg.norm(a, axis=1), np.linalg.norm(s, axis=1)
        cos = np.sum(a * s, axis=1) / np.maximum(na * ns, 1e-30)
        out.append({"layer": l, "density": W.density, "norm_structured": float(na.mean()),
                    "norm_sparse": float(ns.mean()), "cosine": float(cos.mean()),
                    "sparse_share": float(np.mean(ns ** 2 / np.maximum(na ** 2 + ns ** 2, 1e-30)))})
    return out


def cma_point(model, ids, batch, bptt, stats_tokens=None):
    """One point of the CMA record: perplexity with and without S, and the branch statistics (on
    the first `stats_tokens` of `ids` when given, else on all of them)."""
    return {"ppl": perplexity(model, ids, batch, bptt), "ppl_s_off": perplexity(model, ids, batch, bptt, False),
            "layers": branch_statistics(model, ids[:stats_tokens] if stats_tokens else ids, batch, bptt)}


def perplexity_s_pruned(model, ids, batch, bptt, fraction):
    """Perplexity of `ids` after pruning S further, without retraining: every doped layer keeps the
    largest `fraction` of its current entries (at least one). The model is left as it was."""
    layers = doped_layers(model)
    saved = [(W.indptr, W.indices, W.params["S"]) for _, W in layers]
    try:
        for _, W in layers:
            W.set_density(max(W.density * fraction, 1.0 / (W.shape[0] * W.shape[1])))
        return perplexity(model, ids, batch, bptt)
    finally:
        for (_, W), (indptr, indices, values) in zip(layers, saved):
            W.indptr, W.indices, W.params["S"] = indptr, indices, values
            W._reset_dense()


class CMATracker:
    """A training hook that records `cma_point` on a validation slice at `points` evenly spaced
    steps of the anneal window (and once more at the end of training, via `finish`), into
    trainer.history["cma"] as dicts with the step, the epoch and the density of S."""

    def __init__(self, annealer, ids, points=8, batch=10, bptt=35, stats_tokens=None):
        self.ids, self.batch, self.bptt, self.stats_tokens = ids, batch, bptt, stats_tokens
        span = annealer.end - annealer.start
        self.steps = sorted({annealer.start + int(round(span * k / max(points - 1, 1))) for k in range(points)})
        self.annealer = annealer

    def record(self, trainer, step):
        point = {"step": step, "epoch": step / max(trainer.steps_per_epoch, 1),
                 "density": doped_density(trainer.model),
                 **cma_point(trainer.model, self.ids, self.batch, self.bptt, self.stats_tokens)}
        trainer.history.setdefault("cma", []).append(point)
        return point

    def __call__(self, trainer, step):
        if step in self.steps:
            self.record(trainer, step)


class PerplexityProbe:
    """A training hook that records the perplexity of a validation slice (S on) every `every`
    epochs, at the same epochs in every arm whatever its anneal, into trainer.history["probes"] as
    {step, epoch, density, ppl}; `record` adds a point by hand (the end of training)."""

    def __init__(self, ids, every, batch=10, bptt=35):
        if not every > 0:
            raise ValueError(f"every must be a positive number of epochs, got {every!r}")
        self.ids, self.every, self.batch, self.bptt = ids, every, batch, bptt

    def record(self, trainer):
        point = {"step": trainer.step, "epoch": trainer.step / max(trainer.steps_per_epoch, 1),
                 "density": doped_density(trainer.model),
                 "ppl": perplexity(trainer.model, self.ids, self.batch, self.bptt)}
        trainer.history.setdefault("probes", []).append(point)
        return point

    def __call__(self, trainer, step):
        k = round(step / (self.every * trainer.steps_per_epoch))  # the grid point nearest this step
        if k > 0 and step == round(k * self.every * trainer.steps_per_epoch):
            self.record(trainer)
