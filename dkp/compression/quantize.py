"""8-bit quantization of a trained model's stored numbers, after training, to measure what it costs.

Every parameter array is stored as int8 with a float32 scale per row (symmetric: q = round(a / s),
s = max |row| / 127, so 0 stays exactly 0 and each entry is off by at most s / 2); a 1-D array
(a bias, or the values of a sparse S) is cut into blocks of `BLOCK` entries, each with its own
scale. Index arrays (S's CSR pattern, GroupReduce's word order) are not quantized.

`quantize_model` returns a copy of the model whose parameters are the dequantized values, so the
perplexity it gets is the perplexity of the int8 model; `quantized_bytes` counts what storing it as
int8 plus scales takes. Neither changes the model it is given.
"""
from __future__ import annotations

import copy

import numpy as np

from dkp.core.model import other_params
from dkp.core.weights import Pruned

BLOCK = 64


def _rows(a):
    """a viewed as rows that share a scale: 2-D and higher by their last axis, 1-D in blocks."""
    if a.ndim == 1:
        pad = (-a.size) % BLOCK
        return np.concatenate([a, np.zeros(pad, a.dtype)]).reshape(-1, BLOCK), a.size
    return a.reshape(-1, a.shape[-1]), a.size


def quantize(a, bits=8):
    """(q, scales): a as signed integers of `bits` bits (int8 storage) and one float32 scale per row
    (per block of BLOCK entries for a 1-D array)."""
    if not 2 <= int(bits) <= 8:
        raise ValueError(f"bits must be an integer in [2, 8], got {bits!r}")
    a = np.asarray(a)
    if a.dtype.kind != "f" or a.ndim < 1:
        raise ValueError(f"a must be a floating array of at least 1 dimension, got dtype {a.dtype} and shape {a.shape}")
    rows, _ = _rows(a.astype(np.float64))
    top = 2 ** (int(bits) - 1) - 1
    scales = np.abs(rows).max(axis=1) / top                      # (n_rows,)
    safe = np.where(scales > 0, scales, 1.0)
    q = np.clip(np.rint(rows / safe[:, None]), -top, top).astype(np.int8)
    return q, scales.astype(np.float32)


def dequantize(q, scales, like):
    """The values of `quantize(like)`'s (q, scales), in `like`'s shape and dtype."""
    values = (q.astype(np.float64) * scales.astype(np.float64)[:, None]).reshape(-1)[:like.size]
    return values.reshape(like.shape).astype(like.dtype)


def fake_quantize(a, bits=8):
    """a rounded to what its int8-with-scales storage holds."""
    return dequantize(*quantize(a, bits), like=np.asarray(a))


def quantized_nbytes(a):
    """Bytes of `a` stored as int8 plus one float32 scale per row (or block)."""
    rows, size = _rows(np.asarray(a))
    return int(size + 4 * rows.shape[0])


def quantize_model(model, bits=8):
    """A copy of `model` whose every parameter is fake-quantized (see the module docstring)."""
    clone = copy.deepcopy(model)
    for p in clone.params.values():
        p[...] = fake_quantize(p, bits)   # in place: the matrices hold these very arrays
    return clone


def quantized_bytes(model):
    """Bytes of `model` stored with int8 parameters: each matrix's bytes with its parameters'
    replaced by their int8 size (index arrays kept), plus every parameter outside the matrices (the
    biases; a transformer's LayerNorms and positions too), each stored as int8 with its scales."""
    total = 0
    for M in model.matrices.values():
        if isinstance(M, Pruned):      # W is held dense in memory but stored as CSR: int8 values, a scale a row
            total += M.n_bytes - M.n_params * M.dtype.itemsize + M.n_params + 4 * M.shape[0]
            continue
        float_bytes = sum(p.nbytes for p in M.params.values())
        total += M.n_bytes - float_bytes + sum(quantized_nbytes(p) for p in M.params.values())
    total += sum(quantized_nbytes(p) for p in other_params(model).values())
    return int(total)
