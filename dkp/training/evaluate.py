"""Evaluation: the perplexity of a token stream, and what each LSTM layer stores."""
from __future__ import annotations

import math

import numpy as np

from dkp.core.data import batchify, bptt_windows


def evaluate(model, ids, batch, bptt):
    """Perplexity of `ids` (a 1-D token stream), hidden state carried across windows, no dropout."""
    model.set_training(False)
    stream = batchify(ids, batch)
    state = model.zero_state(batch)
    total, count = 0.0, 0
    for x, y in bptt_windows(stream, bptt):
        _, loss, state, _ = model.forward(x, state, y)
        total += loss * x.size
        count += x.size
    return math.exp(total / count)


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
