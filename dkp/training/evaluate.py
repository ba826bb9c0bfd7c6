"""Evaluation: the perplexity of a token stream, what each gate matrix stores (an LSTM layer's, a
transformer block's four), and what the whole model stores. Any language model of dkp.core: the
reports read `model.matrices`."""
from __future__ import annotations

import math

import numpy as np

from dkp.core.data import batchify, bptt_windows
from dkp.core.model import gate_matrices, other_params


def evaluate(model, ids, batch, bptt):
    """Perplexity of `ids` (a 1-D token stream), no dropout. The state is carried across windows:
    the LSTM's hidden state; the transformer's is None, so each window is scored alone, every token
    with the window's earlier tokens as its context (as nanoGPT evaluates)."""
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
    """Mean stored fraction of the doped S (or of the pruned weights) over the gate matrices."""
    values = [W.density if hasattr(W, "density") else 1.0 - W.sparsity
              for W in gate_matrices(model).values() if hasattr(W, "density") or hasattr(W, "sparsity")]
    return float(np.mean(values)) if values else None


def layer_report(model):
    """Per gate matrix (an LSTM layer's; a transformer block's attn.qkv, attn.proj, mlp.fc and
    mlp.proj): its place among them ("layer"), its name, kind, parameters, bytes and compression
    against the dense matrix."""
    out = []
    for l, (name, W) in enumerate(gate_matrices(model).items()):
        m, n = W.shape
        row = {"layer": l, "name": name, "kind": type(W).__name__, "shape": [m, n], "n_params": W.n_params,
               "n_bytes": W.n_bytes, "compression": m * n / W.n_params,
               "byte_compression": m * n * W.dtype.itemsize / W.n_bytes}
        if hasattr(W, "structured"):
            row.update(structured=type(W.structured).__name__, density_of_S=W.density)
        out.append(row)
    return out


def model_report(model):
    """The whole model's storage: per matrix (embedding, each gate matrix, decoder unless tied) and
    the parameters outside them (the biases; a transformer's LayerNorms and positions too), its
    kind, parameters and bytes; the totals and the compression against the same model stored dense
    in its dtype."""
    item = model.dtype.itemsize
    rows = [{"part": name, "kind": type(M).__name__, "shape": list(M.shape), "n_params": M.n_params,
             "n_bytes": M.n_bytes, "dense_params": M.shape[0] * M.shape[1]}
            for name, M in model.matrices.items()]
    for part, size in _other_parts(model).items():
        rows.append({"part": part, "kind": "dense", "shape": [size], "n_params": size, "n_bytes": size * item,
                     "dense_params": size})
    params, dense = sum(r["n_params"] for r in rows), sum(r["dense_params"] for r in rows)
    n_bytes = sum(r["n_bytes"] for r in rows)
    return {"parts": rows, "n_params": params, "n_bytes": n_bytes, "compression": dense / params,
            "byte_compression": dense * item / n_bytes}


def _other_parts(model):
    """{part: parameters} of the parameters outside the matrices, by kind: "biases" (an LSTM has no
    other), "layernorms" (gains and offsets) and "positions"."""
    parts = {}
    for name, p in other_params(model).items():
        owner = name.split(".")[-2] if "." in name else ""    # "ln1" of "blocks.0.ln1.g"
        part = "positions" if name == "pos" else "layernorms" if owner.startswith("ln") else "biases"
        parts[part] = parts.get(part, 0) + p.size
    return parts
