"""A decoder-only transformer language model (GPT-2's shape; nanoGPT's model.py is the anchor) in
NumPy with hand-written backpropagation, with the contract of the LSTM model in dkp.core.model.

    e = dropout(E[x] + pos[t])                         tokens plus learned positions   (T, B, H)
    for each of the L blocks (pre-LayerNorm, as GPT-2):
        e = e + dropout(attn(ln1(e)))                  causal self-attention (dkp.core.attention)
        e = e + dropout(proj(gelu(fc(ln2(e)))))        the MLP: H -> 4H -> H
    logits = ln_f(e) @ D.T + dec_b                     (T, B, V)

Every linear map is a gate matrix of dkp.core.weights, made by the LSTM model's kind of factories,
so Kronecker, low-rank, hybrid, pruned, doped and grouped matrices slot in with no change here:

    gate_factory(layer, shape, rng, init_scale, dtype)   layer: the matrix's name, one of
        "blocks.{l}.attn.qkv" (3H, H)   "blocks.{l}.attn.proj" (H, H)
        "blocks.{l}.mlp.fc"   (4H, H)   "blocks.{l}.mlp.proj"  (H, 4H)
    vocab_factory(role, shape, rng, init_scale, dtype)   role "embed" or "dec", shape (V, H)

q, k and v share one fused (3H, H) matrix, as in GPT-2's c_attn and as the LSTM's one (4H, 2H)
matrix serves its four gates: one product instead of three, and a structure (a Kronecker product,
a low rank, S's sparsity budget) fitted to the whole map, as KnGPT2 compresses GPT-2's c_attn.
With tie=True the decoder is the embedding matrix itself (D = E, GPT-2's weight tying): the
gradient of E sums both uses, and "dec" is neither a factory call nor a parameter prefix.

Parameters are named as the LSTM model's: "embed.*", "pos", then per block "blocks.{l}.ln1.g" and
".b", "blocks.{l}.attn.qkv.*" (the matrix's own names and "b", its bias), "blocks.{l}.attn.proj.*",
"blocks.{l}.ln2.*", "blocks.{l}.mlp.fc.*", "blocks.{l}.mlp.proj.*"; then "ln_f.g", "ln_f.b",
"dec.*" and "dec_b". `backward` keys its gradients the same, so dkp.core.optim applies unchanged.

The state. A training or evaluation window is independent of the one before (its context is the
window itself, at most block_size positions): `zero_state(batch)` is None and a forward with
targets passes None on, so a loop that carries the state from window to window, as the LSTM's
trainer and evaluation do, starts every window afresh. In generation (a forward without targets)
the state is the key/value cache, per block (k, v), each (B, n_head, P, H / n_head): a forward on
the next token with it attends to all P earlier positions and gives the logits the whole sequence's
forward gives. The learned positions end at block_size: a window or a generation that would pass
it is a ValueError.
"""
from __future__ import annotations

import math

import numpy as np

from dkp.core.attention import CausalSelfAttention, visible
from dkp.core.layers import (LayerNorm, Linear, dropout, dropout_backward, embed, embed_backward, gelu,
                             gelu_backward)
from dkp.core.model import (DistillTarget, Forward, check_replacement, dense_gates, dense_vocab, distill_losses,
                            logits_gradient, softmax_cross_entropy)

GPT2_INIT = 0.02 * math.sqrt(3.0)   # U(-s, s) with GPT-2's standard deviation 0.02


class Block:
    """One pre-LayerNorm block: x + dropout(attn(ln1(x))), then x + dropout(proj(gelu(fc(ln2(x))))).
    fc (4H, H) and proj (H, 4H) are `Linear`s; params "ln1.*", "attn.*", "ln2.*", "mlp.fc.*",
    "mlp.proj.*"."""

    def __init__(self, attn, fc, proj, dropout=0.0):
        H = attn.width
        if fc.W.shape != (4 * H, H) or proj.W.shape != (H, 4 * H):
            raise ValueError(f"the MLP's matrices must be fc (4H, H) = ({4 * H}, {H}) and proj (H, 4H) = "
                             f"({H}, {4 * H}), got {fc.W.shape} and {proj.W.shape}")
        dtype = attn.qkv.b.dtype
        self.ln1, self.attn, self.ln2 = LayerNorm(H, dtype), attn, LayerNorm(H, dtype)
        self.fc, self.proj, self.dropout = fc, proj, float(dropout)

    @property
    def linears(self):
        """{name: Linear}: the block's four gate matrices with their biases."""
        return {"attn.qkv": self.attn.qkv, "attn.proj": self.attn.proj, "mlp.fc": self.fc, "mlp.proj": self.proj}

    @property
    def params(self):
        parts = {"ln1": self.ln1, "ln2": self.ln2, **self.linears}
        return {f"{name}.{k}": v for name, part in parts.items() for k, v in part.params.items()}

    def astype(self, dtype):
        for part in (self.ln1, self.ln2, *self.linears.values()):
            part.astype(dtype)
        return self

    def forward(self, x, past=None, rng=None, keep_scores=False):
        """x (T, B, H); past: the context's (k, v) or None -> x (T, B, H), (k, v), cache (with
        `keep_scores`, `self.attn.scores(cache[1])` gives the attention scores)."""
        a, ln1 = self.ln1.forward(x)
        a, kv, attn = self.attn.forward(a, past, rng, keep_scores)
        a, mask1 = dropout(a, self.dropout, rng)
        x = x + a
        h, ln2 = self.ln2.forward(x)
        h, fc = self.fc.forward(h)                           # (T, B, 4H)
        h, act = gelu(h)
        h, proj = self.proj.forward(h)                       # (T, B, H)
        h, mask2 = dropout(h, self.dropout, rng)
        return x + h, kv, (ln1, attn, mask1, ln2, fc, act, proj, mask2)

    def backward(self, dx, cache, dscores=None):
        """dx (T, B, H), the gradient of the block's output -> that of its input, {name: gradient}.
        Each residual adds the gradient through its branch to the one passed straight through.
        `dscores`: a gradient of the attention scores to add (distillation's)."""
        ln1, attn, mask1, ln2, fc, act, proj, mask2 = cache
        dh, gproj = self.proj.backward(dropout_backward(dx, mask2), proj)
        dh, gfc = self.fc.backward(gelu_backward(dh, act), fc)
        dh, gln2 = self.ln2.backward(dh, ln2)
        dx = dx + dh
        da, gattn = self.attn.backward(dropout_backward(dx, mask1), attn, dscores)
        da, gln1 = self.ln1.backward(da, ln1)
        grads = {}
        for name, g in (("ln1", gln1), ("attn", gattn), ("ln2", gln2), ("mlp.fc", gfc), ("mlp.proj", gproj)):
            grads.update({f"{name}.{k}": v for k, v in g.items()})
        return dx + da, grads


def _positive(value, name):
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class TransformerLM:
    """The transformer language model (see the module docstring). forward(x, state, targets) and
    backward(cache) as `dkp.core.model.LanguageModel`'s; block_size is the longest context."""

    def __init__(self, vocab_size, hidden_size, num_layers, num_heads, block_size, *, dropout=0.0,
                 init_scale=GPT2_INIT, seed=0, dtype=np.float32, tie=False, gate_factory=dense_gates,
                 vocab_factory=dense_vocab):
        V, H, L = (_positive(v, n) for v, n in ((vocab_size, "vocab_size"), (hidden_size, "hidden_size"),
                                                (num_layers, "num_layers")))
        nh, self.block_size = _positive(num_heads, "num_heads"), _positive(block_size, "block_size")
        if H % nh:
            raise ValueError(f"num_heads must divide hidden_size = {H} (each head takes H / num_heads "
                             f"features), got {nh}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        rng = np.random.default_rng(seed)
        self.vocab_size, self.hidden_size, self.num_layers, self.num_heads = V, H, L, nh
        self.dropout, self.dtype, self.tie = float(dropout), np.dtype(dtype), bool(tie)
        self.embedding = self._made(vocab_factory("embed", (V, H), rng, init_scale, dtype), "vocab_factory",
                                    "embed", (V, H))
        self.pos = rng.uniform(-init_scale, init_scale, (self.block_size, H)).astype(dtype)   # (block_size, H)
        residual = init_scale / math.sqrt(2 * L)   # GPT-2: each residual branch's last map scaled down

        def linear(name, shape, scale):
            W = self._made(gate_factory(name, shape, rng, scale, dtype), "gate_factory", name, shape)
            return Linear(W, np.zeros(shape[0], dtype), name)

        self.blocks = []
        for l in range(L):
            n = f"blocks.{l}."
            attn = CausalSelfAttention(linear(n + "attn.qkv", (3 * H, H), init_scale),
                                       linear(n + "attn.proj", (H, H), residual), nh, dropout)
            self.blocks.append(Block(attn, linear(n + "mlp.fc", (4 * H, H), init_scale),
                                     linear(n + "mlp.proj", (H, 4 * H), residual), dropout))
        self.ln_f = LayerNorm(H, dtype)
        self._decoder = None if self.tie else self._made(vocab_factory("dec", (V, H), rng, init_scale, dtype),
                                                         "vocab_factory", "dec", (V, H))
        self.dec_b = np.zeros(V, dtype)                      # (V,)

    @staticmethod
    def _made(M, factory, name, shape):
        if M.shape != shape:
            raise ValueError(f"{factory} must give {name!r} the shape {shape}, got {M.shape}")
        return M

    # --- parameters ------------------------------------------------------------------------
    @property
    def decoder(self):
        """The (V, H) softmax matrix: the embedding itself when tied."""
        return self.embedding if self.tie else self._decoder

    @decoder.setter
    def decoder(self, M):
        if self.tie:
            raise ValueError("a tied model's decoder is its embedding: set `embedding` instead")
        self._decoder = M

    @property
    def params(self):
        """{name: array}, rebuilt on each call (a doped matrix may replace its arrays)."""
        p = {f"embed.{k}": v for k, v in self.embedding.params.items()}
        p["pos"] = self.pos
        for l, block in enumerate(self.blocks):
            p.update({f"blocks.{l}.{k}": v for k, v in block.params.items()})
        p.update({f"ln_f.{k}": v for k, v in self.ln_f.params.items()})
        if not self.tie:
            p.update({f"dec.{k}": v for k, v in self.decoder.params.items()})
        p["dec_b"] = self.dec_b
        return p

    @property
    def matrices(self):
        """{prefix: matrix} of every gate matrix, keyed as in `params` (a tied decoder is "embed")."""
        out = {"embed": self.embedding}
        for l, block in enumerate(self.blocks):
            out.update({f"blocks.{l}.{k}": lin.W for k, lin in block.linears.items()})
        if not self.tie:
            out["dec"] = self.decoder
        return out

    def set_matrix(self, name, M):
        """Put M in place of the matrix `name` (a key of `matrices`), of the same shape: e.g. its
        compressed form after a dense warm-up."""
        check_replacement(self.matrices, name, M)
        if name == "embed":
            self.embedding = M
        elif name == "dec":
            self.decoder = M
        else:
            _, l, part = name.split(".", 2)
            self.blocks[int(l)].linears[part].W = M

    def astype(self, dtype):
        """Cast every parameter (float64 for gradient checks); returns self."""
        self.dtype = np.dtype(dtype)
        self.embedding.astype(dtype)
        if not self.tie:
            self.decoder.astype(dtype)
        for block in self.blocks:
            block.astype(dtype)
        self.ln_f.astype(dtype)
        self.pos, self.dec_b = self.pos.astype(dtype), self.dec_b.astype(dtype)
        return self

    def zero_state(self, batch):
        """No context: None (see the module docstring); `batch` is taken for the LSTM's signature."""
        return None

    def set_training(self, training):
        for M in self.matrices.values():
            M.training = training

    # --- checks -------------------------------------------------------------------------------
    def _token_ids(self, a, name):
        a = np.asarray(a)
        if a.ndim != 2 or 0 in a.shape or a.dtype.kind not in "iu":
            raise ValueError(f"{name} must be a (T, B) array of integer token ids, got shape {a.shape} and "
                             f"dtype {a.dtype}")
        if a.min() < 0 or a.max() >= self.vocab_size:
            raise ValueError(f"{name} ids must lie in [0, {self.vocab_size}), got {a.min()}..{a.max()}")
        return a

    def _context(self, state, T, B):
        """The per-block (k, v) of `state` (None: no context) and the positions P they hold."""
        if state is None:
            return [None] * self.num_layers, self._check_length(0, T)
        if not (isinstance(state, (list, tuple)) and len(state) == self.num_layers
                and all(isinstance(kv, (list, tuple)) and len(kv) == 2 for kv in state)):
            raise ValueError(f"state must be None (no context) or the key/value cache a forward without "
                             f"targets returned: a list of num_layers = {self.num_layers} pairs (k, v)")
        P = np.shape(state[0][0])[2] if np.ndim(state[0][0]) == 4 else -1
        want = (B, self.num_heads, P, self.hidden_size // self.num_heads)
        if P < 0 or any(np.shape(a) != want for kv in state for a in kv):
            raise ValueError(f"state's keys and values must each have shape (batch, num_heads, positions, "
                             f"head size) = {want} for x's batch of {B}, got {np.shape(state[0][0])}")
        return list(state), self._check_length(P, T)

    def _check_length(self, P, T):
        if P + T > self.block_size:
            where = (f"x has {T} positions" if P == 0 else
                     f"x's {T} positions after the {P} of state's key/value cache make {P + T}")
            raise ValueError(f"{where}, more than block_size = {self.block_size}, the positions the model has "
                             f"embeddings for")
        return P

    # --- forward / backward --------------------------------------------------------------------
    def forward(self, x, state, targets=None, rng=None, distill=None, keep_scores=False):
        """x: (T, B) token ids; state: None or the key/value cache (see the module docstring);
        targets: (T, B) token ids or None. Dropout is on when an rng is given. With a
        `DistillTarget` (and targets) the loss adds kl_weight * KL(teacher || student) of the
        outputs, hidden_weight * the mean squared difference of each block's output, embed_weight *
        that of the embedding's output (tokens plus positions, before dropout) and attn_weight *
        that of each block's attention scores q k^T / sqrt(d) over the entries the mask leaves
        visible (KroneckerBERT's intermediate-layer distillation).

        Returns Forward(logits, loss, state, cache): logits (T, B, V); loss the mean objective per
        token in nats (None without targets); the state: the key/value cache without targets, None
        with them; the cache `backward` consumes (None without targets), whose "parts" give the
        loss's terms {"task", "kl", "hidden", "embed", "attn"}. `keep_scores`: the cache keeps every
        block's attention scores even without distillation (a teacher's, `teacher_outputs`)."""
        x = self._token_ids(x, "x")
        T, B = x.shape
        past, P = self._context(state, T, B)
        if targets is not None:
            targets = self._token_ids(targets, "targets")
            if targets.shape != x.shape:
                raise ValueError(f"targets must have x's shape {x.shape}, got {targets.shape}")
        elif distill is not None:
            raise ValueError("distill needs targets: distillation adds to the task loss")
        scores_kept = keep_scores or (distill is not None and bool(distill.attn_weight))
        emb = embed(self.embedding, self.pos, x, P)         # (T, B, H)
        e, mask = dropout(emb, self.dropout, rng)
        caches, kv, hidden = [], [], []
        for block, block_past in zip(self.blocks, past):
            e, block_kv, c = block.forward(e, block_past, rng, scores_kept)
            caches.append(c)
            kv.append(block_kv)
            hidden.append(e)
        h, ln_f = self.ln_f.forward(e)
        logits, dec = self.decoder.forward(h.reshape(T * B, self.hidden_size))   # (TB, V)
        logits += self.dec_b
        if targets is None:
            return Forward(logits.reshape(T, B, -1), None, kv, None)
        row_max = logits.max(axis=1, keepdims=True)          # (TB, 1)
        shifted = logits - row_max if distill is not None else None
        probs, sums, logp_y = softmax_cross_entropy(logits, targets.reshape(-1), row_max)
        parts = {"task": float(-np.mean(logp_y))}
        if distill is not None:
            parts.update(distill_losses(distill, shifted, sums, hidden))
            parts.update(self._layer_distillation(distill, emb, caches))
        loss = sum(parts.values())
        cache = {"x": x, "y": targets, "start": P, "mask": mask, "blocks": caches, "ln_f": ln_f, "dec": dec,
                 "probs": probs, "sums": sums, "hidden": hidden, "distill": distill, "parts": parts, "emb": emb}
        return Forward(logits.reshape(T, B, -1), loss, None, cache)

    def _scores(self, caches):
        return [block.attn.scores(c[1]) for block, c in zip(self.blocks, caches)]

    def _layer_distillation(self, d, emb, caches):
        """{"embed", "attn"}: the weighted mean squared differences of the embedding's output and of
        each block's attention scores (over the visible entries, summed over blocks) from the
        teacher's in `d`."""
        out = {}
        if d.embed_weight:
            if d.embed is None or d.embed.shape != emb.shape:
                raise ValueError(f"the teacher's embedding output must have the student's shape {emb.shape}")
            out["embed"] = d.embed_weight * float(np.mean((emb - d.embed) ** 2))
        if d.attn_weight:
            mine = self._scores(caches)
            if d.scores is None or len(d.scores) != len(mine) or any(t.shape != m.shape for t, m in zip(d.scores, mine)):
                raise ValueError("the teacher's attention scores must match the student's: as many blocks, of the "
                                 "same heads and positions")
            seen = visible(*mine[0].shape[2:])
            out["attn"] = d.attn_weight * sum(float(np.mean((m - t)[..., seen] ** 2)) for m, t in zip(mine, d.scores))
        return out

    def backward(self, cache, scale=1.0):
        """Gradients of scale * loss for every parameter: {name: array}. The softmax in `cache` is
        turned into the gradient of the logits in place, so a cache serves one backward; a second
        call raises. A context from `state` is a constant: no gradient flows into it."""
        dlogits = logits_gradient(cache, scale)              # checks the cache first
        x, d = cache["x"], cache["distill"]
        T, B = x.shape
        dh, gdec = self.decoder.backward(dlogits, cache["dec"])
        grads = {"dec_b": dlogits.sum(axis=0)}
        de, g = self.ln_f.backward(dh.reshape(T, B, self.hidden_size), cache["ln_f"])
        grads.update({f"ln_f.{k}": v for k, v in g.items()})
        dscores = [None] * self.num_layers
        if d is not None and d.attn_weight:                   # d mean over the visible entries of (s - t)^2 / ds
            mine = self._scores(cache["blocks"])
            seen = visible(*mine[0].shape[2:])
            n = mine[0][..., seen].size
            dscores = [(2.0 * d.attn_weight * scale / n) * np.where(seen, m - t, 0.0) for m, t in zip(mine, d.scores)]
        for l in reversed(range(self.num_layers)):
            if d is not None and d.hidden_weight:             # d mean((e - t)^2) / de
                de = de + (2.0 * d.hidden_weight * scale / de.size) * (cache["hidden"][l] - d.hidden[l])
            de, g = self.blocks[l].backward(de, cache["blocks"][l], dscores[l])
            grads.update({f"blocks.{l}.{k}": v for k, v in g.items()})
        demb = dropout_backward(de, cache["mask"])
        if d is not None and d.embed_weight:                  # d mean((emb - t)^2) / demb
            demb = demb + (2.0 * d.embed_weight * scale / demb.size) * (cache["emb"] - d.embed)
        gemb, grads["pos"] = embed_backward(self.embedding, self.pos, x, cache["start"], demb)
        if self.tie:                                          # E served twice: its gradients add
            gemb = {k: v + gdec[k] for k, v in gemb.items()}
        else:
            grads.update({f"dec.{k}": v for k, v in gdec.items()})
        grads.update({f"embed.{k}": v for k, v in gemb.items()})
        return grads

    def matrix_inputs(self, cache):
        """{name in `matrices`: (N, n)}: the rows each block's gate matrix multiplied in the forward
        that made `cache` (each matrix's cache opens with its input), for diagnostics of its branches."""
        out = {}
        for l, (_, attn, _, _, fc, _, proj, _) in enumerate(cache["blocks"]):
            qkv, _, attn_proj, _ = attn
            for part, c in (("attn.qkv", qkv), ("attn.proj", attn_proj), ("mlp.fc", fc), ("mlp.proj", proj)):
                out[f"blocks.{l}.{part}"] = c[0]
        return out

    def teacher_outputs(self, x, state, targets, kl_weight, hidden_weight, embed_weight=0.0, attn_weight=0.0):
        """This model as a teacher on one window (no dropout): (DistillTarget, its new state); the
        embedding's output and each block's attention scores when their weights ask for them."""
        self.set_training(False)
        out = self.forward(x, state, targets, keep_scores=bool(attn_weight))
        c = out.cache
        probs = c["probs"] / c["sums"][:, None]             # (TB, V)
        return DistillTarget(probs, c["hidden"], float(kl_weight), float(hidden_weight),
                             embed=c["emb"] if embed_weight else None,
                             scores=self._scores(c["blocks"]) if attn_weight else None,
                             embed_weight=float(embed_weight), attn_weight=float(attn_weight)), out.state
