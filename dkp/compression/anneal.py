"""The anneal: the density of S (and the sparsity of pruning masks) along the cubic schedule while
the model trains, a scheduled change the training loop makes at every step (`Annealer.apply`).

    Annealer(config, steps_per_epoch)    the schedule of one config; .apply(model, step, optimizer)
    needs_annealing(config)              whether a config anneals anything
    doped_layers(model), doped_density   which matrices carry an S, and its mean density

The other scheduled changes have modules of their own: the dense warm-up's switch to the compressed
model (dkp.compression.teacher) and the co-matrix dropout schedule (dkp.compression.cmr).
"""
from __future__ import annotations

import numpy as np

from dkp.compression.schedules import cubic_schedule
from dkp.compression.shapes import pruning_sparsity
from dkp.core.model import gate_matrices
from dkp.core.weights import Doped, Pruned


class Annealer:
    """Moves every doped gate matrix's density of S from 1 to `config.doping`, and every pruned gate
    matrix's sparsity from 0 to its compression target, along the cubic schedule between epochs
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

    def apply(self, model, step, optimizer=None):
        """The anneal's change at `step` to `model` (and to `optimizer`'s state of S, when given),
        as the training loop makes it before that step's update; also usable without a trainer,
        e.g. `apply(model, annealer.end)` for the annealed sizes."""
        if step < self.start or step > self.end or ((step - self.start) % self.every and step != self.end):
            return
        for name, W in gate_matrices(model).items():
            if isinstance(W, Doped) and self.config.anneal_s:
                target = self.density_at(step)
                if round(target * W.shape[0] * W.shape[1]) < W.nnz:
                    keep = W.set_density(target)
                    if hasattr(optimizer, "reindex"):
                        optimizer.reindex(f"{name}.S", keep)
            elif isinstance(W, Pruned):
                final = pruning_sparsity(W.shape, self.config.compression)
                target = cubic_schedule(step, self.start, self.end, 0.0, final)
                if target > W.sparsity:
                    W.set_sparsity(target)


def needs_annealing(config):
    """S (doping) or a pruning mask to anneal."""
    return config.doping > 0 or config.structure == "prune"


# --- which matrices are doped --------------------------------------------------------------------
def doped_layers(model):
    """[(name, matrix)] of the model's doped gate matrices, named as in `model.matrices` (an LSTM's
    "lstm0", "lstm1"; a transformer's "blocks.0.attn.qkv", ...)."""
    return [(name, W) for name, W in gate_matrices(model).items() if isinstance(W, Doped)]


def doped_density(model):
    """Mean density of S over the doped matrices (None without any)."""
    layers = doped_layers(model)
    return float(np.mean([W.density for _, W in layers])) if layers else None
