"""Doping in training: annealing the density of S (and of pruning masks), and the co-matrix
adaptation (CMA) diagnostics. Co-matrix dropout itself lives in `dkp.weights.doped`.

Both are hooks of the training loop: callables hook(trainer, step) run before each update.
"""
from __future__ import annotations

import numpy as np

from .data import batchify, bptt_windows
from .schedules import cubic_schedule
from .shapes import pruning_sparsity
from .weights import Doped, Pruned, stack_caches


class Annealer:
    """Moves every doped layer's density of S from 1 to `config.doping`, and every pruned layer's
    sparsity from 0 to its compression target, along the cubic schedule between epochs
    `anneal_start` and `anneal_end`, re-masking by magnitude every `anneal_every` steps; the masks
    are frozen after the window. Adam's moments of S are re-indexed to the kept entries."""

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
            if isinstance(W, Doped):
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


# --- co-matrix adaptation diagnostics ------------------------------------------------------------
def doped_layers(model):
    return [(l, layer.W) for l, layer in enumerate(model.layers) if isinstance(layer.W, Doped)]


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


def cma_point(model, ids, batch, bptt):
    """One point of the CMA record: perplexity with and without S, and the branch statistics."""
    return {"ppl": perplexity(model, ids, batch, bptt), "ppl_s_off": perplexity(model, ids, batch, bptt, False),
            "layers": branch_statistics(model, ids, batch, bptt)}


class CMATracker:
    """A training hook that records `cma_point` on a validation slice at `points` evenly spaced
    steps of the anneal window (and once more at the end of training, via `finish`), into
    trainer.history["cma"] as dicts with the step, the epoch and the density of S."""

    def __init__(self, annealer, ids, points=8, batch=10, bptt=35):
        self.ids, self.batch, self.bptt = ids, batch, bptt
        span = annealer.end - annealer.start
        self.steps = sorted({annealer.start + int(round(span * k / max(points - 1, 1))) for k in range(points)})
        self.annealer = annealer

    def record(self, trainer, step):
        layers = doped_layers(trainer.model)
        point = {"step": step, "epoch": step / max(trainer.steps_per_epoch, 1),
                 "density": float(np.mean([W.density for _, W in layers])) if layers else None,
                 **cma_point(trainer.model, self.ids, self.batch, self.bptt)}
        trainer.history.setdefault("cma", []).append(point)
        return point

    def __call__(self, trainer, step):
        if step in self.steps:
            self.record(trainer, step)
