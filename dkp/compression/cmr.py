"""The co-matrix dropout schedule: how the dropout probability on S follows S's density while it is
annealed, a scheduled change the training loop makes at every step (after the anneal, so it sees
this step's density). Co-matrix dropout itself lives in `dkp.core.weights.doped`.

    cmr_probability(config, density)     p for S of that density, by config.cmr_schedule
    CMRSchedule(config).apply(model)     every doped matrix's p from its own density
    needs_cmr_schedule(config)           whether a config's p changes during training at all
"""
from __future__ import annotations

from dkp.compression.anneal import doped_layers


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
    """Sets each doped matrix's co-matrix dropout probability from its density of S
    (`cmr_probability`). The training loop applies it at every step, after the anneal."""

    def __init__(self, config):
        self.config = config

    def apply(self, model):
        for _, W in doped_layers(model):
            W.cmr_p = cmr_probability(self.config, W.density)


def needs_cmr_schedule(config):
    """A schedule other than "constant" on a doped model with co-matrix dropout: the matrices are
    built with p = cmr_p, which only a schedule changes."""
    return config.doping > 0 and config.cmr_p > 0 and config.cmr_schedule != "constant"
