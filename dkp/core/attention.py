"""Causal multi-head self-attention, forward and hand-written backward, with the key/value cache that
lets generation feed one token at a time.

For a window of rows x (T, B, H), one fused gate matrix W_qkv (3H, H) gives queries, keys and values
(as GPT-2's c_attn), each cut into n_head heads of size d = H / n_head:

    q, k, v = split(x @ W_qkv.T + b_qkv)          each (B, nh, T, d)
    k, v = [k_past; k], [v_past; v]                (B, nh, S, d), S = P + T: P positions of context
    scores = q @ k^T / sqrt(d)                     (B, nh, T, S)
    scores[i, j] = -inf where j > P + i            the causal mask: query i sits at position P + i
    att = dropout(softmax(scores))                 softmax over j, each row sums to 1 before dropout
    y = att @ v                                    (B, nh, T, d), heads merged back to (T, B, H)
    out = y @ W_proj.T + b_proj                    (T, B, H)

During training P = 0 and the window attends to itself; in generation (k_past, v_past) is what the
earlier tokens left, so a new token attends to every earlier one without recomputing them. The
context is a constant to the backward pass: gradients reach this window's keys and values only, as
truncated BPTT drops the gradient of an LSTM's incoming state.

The products are NumPy's (BLAS); the mask, the softmax and its dropout, and their backward, run in
`dkp.kernels.transformer` (`causal_softmax`: a row at a time, the masked keys never touched but to
zero them), where their NumPy references sit and are tested against them.
"""
from __future__ import annotations

import math

import numpy as np

from dkp.kernels.transformer import causal_softmax, causal_softmax_backward


def causal_mask(T, S):
    """(T, S) boolean, True where query i (at position S - T + i) would see a later key j."""
    return np.arange(S)[None, :] > np.arange(S - T, S)[:, None]


def attend(q, k, v, p=0.0, rng=None, keep_scores=False):
    """The attention itself: q (B, nh, T, d) over keys and values k, v (B, nh, S, d), S >= T, whose
    last T positions are the queries' own. Dropout p on the attention weights when an rng is given.
    Returns y (B, nh, T, d) and the cache of `attend_backward`; with `keep_scores` the cache also
    holds the scores q k^T / sqrt(d) before the mask (what distillation compares), else None."""
    S, d = k.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(d)
    # the dropout's uniforms, drawn as dkp.core.layers.dropout draws them (the same masks)
    u = None if rng is None or p == 0.0 else rng.random(q.shape[:-1] + (S,), dtype=np.float32)
    raw = q @ k.transpose(0, 1, 3, 2)                        # (B, nh, T, S)
    scores = raw * scale if keep_scores else None
    att, dropped, mask = causal_softmax(raw, scale, p, u)   # (B, nh, T, S)
    return dropped @ v, (q, k, v, att, dropped, mask, scale, scores)


def visible(T, S):
    """(T, S) boolean, True where query i may see key j: the entries the scores' distillation reads."""
    return ~causal_mask(T, S)


def attend_backward(dy, cache, dscores=None):
    """dy (B, nh, T, d) -> dq (B, nh, T, d), dk, dv (B, nh, S, d). Through the softmax, row by row:
    draw = att * (datt - sum_j(datt * att)) / sqrt(d); masked entries have att = 0 and get no
    gradient. `dscores`: a gradient of the scores themselves (B, nh, T, S) to add (distillation's)."""
    q, k, v, att, dropped, mask, scale, _ = cache
    dv = dropped.transpose(0, 1, 3, 2) @ dy                  # (B, nh, S, d)
    draw = causal_softmax_backward(dy @ v.transpose(0, 1, 3, 2), att, mask, scale)   # (B, nh, T, S)
    if dscores is not None:
        draw = draw + dscores * scale                        # scores = raw * scale
    return draw @ k, draw.transpose(0, 1, 3, 2) @ q, dv


class CausalSelfAttention:
    """Multi-head causal self-attention over gate matrices: qkv (3H, H) and proj (H, H), each a
    `Linear` (gate matrix plus bias). params are named "qkv.*" and "proj.*"."""

    def __init__(self, qkv, proj, n_head, dropout=0.0):
        H = proj.W.shape[0]
        if proj.W.shape != (H, H):
            raise ValueError(f"proj must be a square (H, H) matrix, got {proj.W.shape}")
        if qkv.W.shape != (3 * H, H):
            raise ValueError(f"qkv must have shape (3 * H, H) = ({3 * H}, {H}), got {qkv.W.shape}")
        if not isinstance(n_head, (int, np.integer)) or n_head < 1 or H % n_head:
            raise ValueError(f"n_head must be a positive integer dividing the width H = {H}, got {n_head!r}")
        self.qkv, self.proj = qkv, proj
        self.n_head, self.width, self.dropout = int(n_head), H, float(dropout)

    @property
    def params(self):
        return {**{f"qkv.{k}": v for k, v in self.qkv.params.items()},
                **{f"proj.{k}": v for k, v in self.proj.params.items()}}

    @property
    def matrices(self):
        return {"qkv": self.qkv.W, "proj": self.proj.W}

    def astype(self, dtype):
        self.qkv.astype(dtype)
        self.proj.astype(dtype)
        return self

    def _heads(self, a):
        """(T, B, H) -> (B, nh, T, d)."""
        T, B, _ = a.shape
        return a.reshape(T, B, self.n_head, -1).transpose(1, 2, 0, 3)

    def _merge(self, a):
        """(B, nh, T, d) -> (T, B, H), the heads side by side."""
        B, _, T, _ = a.shape
        return a.transpose(2, 0, 1, 3).reshape(T, B, self.width)

    def forward(self, x, past=None, rng=None, keep_scores=False):
        """x (T, B, H); past: the context's (k, v), each (B, nh, P, d), or None. Dropout on the
        attention weights when an rng is given. Returns out (T, B, H), the keys and values of
        context and window together (k, v) (B, nh, P + T, d), and the cache of `backward` (with
        `keep_scores`, `scores(cache)` gives the attention scores)."""
        T = x.shape[0]
        qkv, qkv_cache = self.qkv.forward(x)                 # (T, B, 3H)
        q, k, v = (self._heads(a) for a in np.split(qkv, 3, axis=-1))   # (B, nh, T, d)
        if past is not None:
            k, v = np.concatenate([past[0], k], axis=2), np.concatenate([past[1], v], axis=2)
        y, att_cache = attend(q, k, v, self.dropout, rng, keep_scores)   # (B, nh, T, d)
        out, proj_cache = self.proj.forward(self._merge(y))  # (T, B, H)
        return out, (k, v), (qkv_cache, att_cache, proj_cache, T)

    @staticmethod
    def scores(cache):
        """The scores q k^T / sqrt(d) (B, nh, T, S) a forward with `keep_scores` kept in `cache`."""
        return cache[1][-1]

    def backward(self, dout, cache, dscores=None):
        """dout (T, B, H) -> dx (T, B, H), {"qkv.*", "proj.*"}; `dscores`: a gradient of the scores
        to add (see `attend_backward`)."""
        qkv_cache, att_cache, proj_cache, T = cache
        dy, gproj = self.proj.backward(dout, proj_cache)
        dq, dk, dv = attend_backward(self._heads(dy), att_cache, dscores)
        # the context's keys and values are constants: keep the window's last T positions
        dqkv = np.concatenate([self._merge(dq), self._merge(dk[:, :, -T:]), self._merge(dv[:, :, -T:])],
                              axis=-1)                       # (T, B, 3H)
        dx, gqkv = self.qkv.backward(dqkv, qkv_cache)
        return dx, {**{f"qkv.{k}": g for k, g in gqkv.items()}, **{f"proj.{k}": g for k, g in gproj.items()}}

