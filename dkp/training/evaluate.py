"""Evaluation: the perplexity of a token stream, what each LSTM layer stores, and what the whole
model stores."""
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


def model_report(model):
    """The whole model's storage: per matrix (embedding, each LSTM layer's gate matrix, decoder) and
    the biases, its kind, parameters and bytes; the totals and the compression against the same
    model stored dense in its dtype."""
    item = model.dtype.itemsize
    rows = [{"part": name, "kind": type(M).__name__, "shape": list(M.shape), "n_params": M.n_params,
             "n_bytes": M.n_bytes, "dense_params": M.shape[0] * M.shape[1]}
            for name, M in model.matrices.items()]
    biases = sum(layer.b.size for layer in model.layers) + model.dec_b.size
    rows.append({"part": "biases", "kind": "dense", "shape": [biases], "n_params": biases,
                 "n_bytes": biases * item, "dense_params": biases})
    params, dense = sum(r["n_params"] for r in rows), sum(r["dense_params"] for r in rows)
    n_bytes = sum(r["n_bytes"] for r in rows)
    return {"parts": rows, "n_params": params, "n_bytes": n_bytes, "compression": dense / params,
            "byte_compression": dense * item / n_bytes}
