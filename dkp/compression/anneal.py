"""The anneal: hooks that change a compressed model while it trains, chosen from its config.

The density of S (and the sparsity of pruning masks) along the cubic schedule, the co-matrix dropout
probability along the anneal, and (from dkp.compression.teacher) the switch from a dense warm-up to
the compressed model. Each is a hook of the training loop: a callable hook(trainer, step) run
before each update, which may also define `describe()` (a line for the training log),
`state_arrays(trainer)` (arrays a checkpoint must keep) and `restore(trainer, step, arrays)` (called
when a checkpoint taken at `step` is loaded, before the model's arrays, with the hook's own).
`anneal_hooks(config, steps_per_epoch)` builds them. Co-matrix dropout itself lives in
`dkp.core.weights.doped`.
"""
from __future__ import annotations

import numpy as np

from dkp.compression.schedules import cubic_schedule
from dkp.compression.shapes import pruning_sparsity
from dkp.compression.teacher import DenseWarmup
from dkp.core.weights import Doped, Pruned


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

    def describe(self):
        c = self.config
        return f"annealed to {c.compression:g}x between epochs {c.anneal_start:g} and {c.anneal_end:g}"

    def density_at(self, step):
        return cubic_schedule(step, self.start, self.end, 1.0, self.config.doping)

    def __call__(self, trainer, step):
        self.apply(trainer.model, step, trainer.optimizer)

    def apply(self, model, step, optimizer=None):
        """What the hook does at `step` to `model` (and to `optimizer`'s state of S, when given):
        also usable without a trainer, e.g. `apply(model, annealer.end)` for the annealed sizes."""
        if step < self.start or step > self.end or ((step - self.start) % self.every and step != self.end):
            return
        for l, layer in enumerate(model.layers):
            W = layer.W
            if isinstance(W, Doped) and self.config.anneal_s:
                target = self.density_at(step)
                if round(target * W.shape[0] * W.shape[1]) < W.nnz:
                    keep = W.set_density(target)
                    if hasattr(optimizer, "reindex"):
                        optimizer.reindex(f"lstm{l}.S", keep)
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


# --- the hooks a config asks for ----------------------------------------------------------------
def anneal_hooks(config, steps_per_epoch):
    """The hooks of `config`, in the order they must run: the switch from a dense warm-up, the
    anneal, the schedule of co-matrix dropout's p (an empty list for a model that never changes)."""
    hooks = [DenseWarmup(config, steps_per_epoch) if config.dense_warmup else None,
             Annealer(config, steps_per_epoch) if needs_annealing(config) else None,
             CMRSchedule(config) if needs_cmr_schedule(config) else None]
    return [h for h in hooks if h is not None]


# --- which layers are doped --------------------------------------------------------------------
def doped_layers(model):
    return [(l, layer.W) for l, layer in enumerate(model.layers) if isinstance(layer.W, Doped)]


def doped_density(model):
    """Mean density of S over the doped layers (None without any)."""
    layers = doped_layers(model)
    return float(np.mean([W.density for _, W in layers])) if layers else None
