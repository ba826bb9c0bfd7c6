"""From a training config to the gate matrices of its LSTM layers.

The embedding and the softmax stay dense, as in the doping paper; only the LSTM gate matrices are
structured. This is the one place that maps `--structure/--compression/--doping` to matrix types.
"""
from __future__ import annotations

from .model import dense_gates


def gate_factory(config):
    """A callable (layer, shape, rng, init_scale, dtype) -> GateMatrix for `config.structure`."""
    if config.structure == "dense":
        return dense_gates
    raise ValueError(f"structure must be one of ['dense'], got {config.structure!r}")
