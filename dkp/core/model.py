"""The language model: embedding -> L LSTM layers -> linear decoder -> softmax cross-entropy.

The embedding and the decoder are (V, H) matrices of the gate-matrix protocol (dense unless a
vocabulary factory says otherwise, e.g. GroupReduce's grouped low rank): the embedding is read with
`rows`, the decoder multiplies with `forward`. Their parameters are named "embed.*" and "dec.*".

Dropout (inverted, masks drawn from a NumPy Generator) sits only on non-recurrent connections, as in
Zaremba et al.: on the embedding output, between LSTM layers and before the decoder.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dkp.core.lstm_fast import FastLSTMLayer
from dkp.core.weights import Dense, stack_caches


VOCAB_ROLES = ("embed", "dec")   # the names of the (V, H) matrices in `matrices`; every other is a gate matrix


def gate_matrices(model):
    """{name: matrix} of a model's gate matrices: its `matrices` but the embedding and the softmax."""
    return {name: M for name, M in model.matrices.items() if name not in VOCAB_ROLES}


def other_params(model):
    """{name: array} of a model's parameters that no matrix of `matrices` holds: the biases (and a
    transformer's LayerNorm gains and offsets and its learned positions)."""
    held = {id(p) for M in model.matrices.values() for p in M.params.values()}
    return {name: p for name, p in model.params.items() if id(p) not in held}


def dense_gates(layer, shape, rng, init_scale, dtype):
    """The default gate-matrix factory: a dense U(-init_scale, init_scale) matrix."""
    return Dense.init(shape, rng, init_scale, dtype)


def dense_vocab(role, shape, rng, init_scale, dtype):
    """The default factory of the embedding and decoder (role "embed" or "dec"): dense U(-s, s)."""
    return Dense.init(shape, rng, init_scale, dtype)


def softmax_cross_entropy(logits, targets, row_max=None):
    """The softmax cross-entropy's forward over the rows of logits (N, V) with targets (N,) ids.
    Returns (e, sums, logp_y): e = exp(logits - row max) (N, V), the softmax up to its row sums
    `sums` (N,), and logp_y (N,) the log-probability of each row's target. Computed in the logits'
    dtype, e the only (N, V) array allocated; `softmax_cross_entropy_grad_` turns e into the
    gradient of the logits in place. row_max (N, 1): logits.max(axis=1, keepdims=True) if the
    caller has it already.

    logp_y = (logit_y - row max) - log(sums) is taken from the shifted logit itself, not from the
    log of its exponential: e_y underflows to 0 once the target lies about 104 (float32) or 745
    (float64) below its row's maximum, where log(e_y) would make the loss infinite. sums >= 1 (the
    maximum contributes exp(0)), so log(sums) is always finite."""
    if row_max is None:
        row_max = logits.max(axis=1, keepdims=True)          # (N, 1)
    e = logits - row_max                                     # (N, V)
    logp_y = e[np.arange(len(targets)), targets]             # (N,) a copy: logit_y - row max
    np.exp(e, out=e)
    sums = e.sum(axis=1)                                     # (N,)
    logp_y -= np.log(sums)
    return e, sums, logp_y


def softmax_cross_entropy_grad_(e, sums, targets, weight, target_weight):
    """In place, e <- weight * softmax - target_weight * onehot(targets), from the forward's
    (e, sums): the gradient of the logits of weight * (-log p(y)) when weight == target_weight
    (the mean loss over N rows: both 1 / N). A distillation term adds to `weight` (its p - q
    gradient's p) and subtracts q itself. Returns e."""
    e *= (weight / sums)[:, None]
    e[np.arange(len(targets)), targets] -= target_weight
    return e


class DistillTarget(NamedTuple):
    """A teacher's outputs on the same window, for knowledge distillation (see `forward`)."""
    probs: np.ndarray           # (T*B, V) the teacher's softmax
    hidden: list                # per layer, its hidden states (T, B, H) before dropout
    kl_weight: float            # weight of KL(teacher || student) on the output distribution
    hidden_weight: float        # weight of the mean squared error of each layer's hidden states
    embed: np.ndarray | None = None   # the transformer's embedding output (T, B, H), before dropout
    scores: list | None = None  # per transformer block, its attention scores (B, nh, T, S) before the mask
    embed_weight: float = 0.0   # weight of the mean squared error of the embedding's output
    attn_weight: float = 0.0    # weight of the mean squared error of the attention scores (visible entries)


class Forward(NamedTuple):
    """What a language model's `forward` returns (`LanguageModel`'s, dkp.core.transformer's)."""
    logits: np.ndarray          # (T, B, V)
    loss: float | None          # mean objective per token (nats), None without targets
    state: list | None          # what to carry into the next window: the LSTM's (h, c) per layer; the
                                # transformer's key/value cache in generation, None in training
    cache: dict | None          # for `backward`, None without targets


def distill_losses(d, shifted, sums, hidden):
    """The weighted distillation terms of a student's loss, {"kl", "hidden"}, from a teacher's
    `DistillTarget` d: d.kl_weight * KL(teacher || student) of the output distributions and
    d.hidden_weight * the mean squared difference of each layer's hidden states (an LSTM layer's,
    a transformer block's output), both averaged over tokens. shifted: the student's logits minus
    their row maximum (TB, V); sums: the row sums of their exponentials (TB,); hidden: the
    student's per-layer states."""
    if d.probs.shape != shifted.shape or (d.hidden_weight and len(d.hidden) != len(hidden)):
        raise ValueError(f"the teacher's outputs must match the student's: probs {shifted.shape} and "
                         f"{len(hidden)} layers, got {d.probs.shape} and {len(d.hidden)}")
    logq = np.log(np.maximum(d.probs, np.finfo(d.probs.dtype).tiny))   # (TB, V) teacher
    logp = shifted - np.log(sums)[:, None]                    # (TB, V) student
    kl = float(np.mean(np.sum(d.probs * (logq - logp), axis=1)))
    mse = sum(float(np.mean((hs - t) ** 2)) for hs, t in zip(hidden, d.hidden)) if d.hidden_weight else 0.0
    return {"kl": d.kl_weight * kl, "hidden": d.hidden_weight * mse}


def logits_gradient(cache, scale):
    """The gradient of scale * loss with respect to the logits (T*B, V), from a forward's `cache`
    (both language models keep "x", "y", "probs", "sums" and "distill" there): the mean cross-entropy
    over the window's T*B tokens, plus the distillation's KL term when there is one. The softmax in
    the cache is turned into the gradient in place, so a cache serves one backward; a second call
    raises instead of returning wrong gradients."""
    if cache is None:
        raise ValueError("backward needs the cache of a forward with targets (it had none)")
    if cache["probs"] is None:
        raise RuntimeError("this cache was already used by backward, which overwrites it; run forward "
                           "again for another backward")
    probs, d = cache["probs"], cache["distill"]
    cache["probs"] = None
    N = cache["x"].size
    kl = 0.0 if d is None else d.kl_weight
    dlogits = softmax_cross_entropy_grad_(probs, cache["sums"], cache["y"].reshape(-1),
                                          (1.0 + kl) * (scale / N), scale / N)   # (TB, V), in place
    if kl:
        dlogits -= (kl * scale / N) * d.probs             # d KL(q || p) / d logits = p - q
    return dlogits


def check_replacement(matrices, name, M):
    """A matrix may replace `name` among a model's `matrices` only with the same shape (set_matrix)."""
    old = matrices.get(name)
    if old is None:
        raise ValueError(f"name must be one of {list(matrices)}, got {name!r}")
    if M.shape != old.shape:
        raise ValueError(f"the matrix for {name!r} must have shape {old.shape}, got {M.shape}")


class LanguageModel:
    def __init__(self, vocab_size, hidden_size, num_layers, *, dropout=0.0, init_scale=0.1, seed=0,
                 dtype=np.float32, gate_factory=dense_gates, vocab_factory=dense_vocab):
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        V, H = vocab_size, hidden_size
        rng = np.random.default_rng(seed)
        u = lambda *shape: rng.uniform(-init_scale, init_scale, size=shape).astype(dtype)  # noqa: E731
        self.vocab_size, self.hidden_size, self.num_layers = V, H, num_layers
        self.dropout, self.dtype = dropout, np.dtype(dtype)
        self.embedding = vocab_factory("embed", (V, H), rng, init_scale, dtype)   # (V, H)
        self.layers = [FastLSTMLayer(gate_factory(l, (4 * H, 2 * H), rng, init_scale, dtype), u(4 * H), H, H)
                       for l in range(num_layers)]
        self.decoder = vocab_factory("dec", (V, H), rng, init_scale, dtype)       # (V, H)
        self.dec_b = u(V)                                    # (V,)
        for name, M in (("embedding", self.embedding), ("decoder", self.decoder)):
            if M.shape != (V, H):
                raise ValueError(f"vocab_factory must give the {name} the shape (vocab_size, hidden_size) = "
                                 f"({V}, {H}), got {M.shape}")

    # --- parameters ------------------------------------------------------------------------
    @property
    def params(self):
        """{name: array}, rebuilt on each call (a doped matrix may replace its arrays)."""
        p = {f"embed.{k}": v for k, v in self.embedding.params.items()}
        for l, layer in enumerate(self.layers):
            p.update({f"lstm{l}.{k}": v for k, v in layer.params.items()})
        p.update({f"dec.{k}": v for k, v in self.decoder.params.items()})
        p["dec_b"] = self.dec_b
        return p

    @property
    def matrices(self):
        """{prefix: matrix} of every matrix the model holds, keyed as in `params`."""
        return {"embed": self.embedding, **{f"lstm{l}": layer.W for l, layer in enumerate(self.layers)},
                "dec": self.decoder}

    def set_matrix(self, name, M):
        """Put M in place of the matrix `name` (a key of `matrices`), of the same shape: e.g. its
        compressed form after a dense warm-up."""
        check_replacement(self.matrices, name, M)
        if name == "embed":
            self.embedding = M
        elif name == "dec":
            self.decoder = M
        else:
            self.layers[int(name[len("lstm"):])].W = M

    def astype(self, dtype):
        """Cast every parameter (float64 for gradient checks); returns self."""
        self.dtype = np.dtype(dtype)
        self.dec_b = self.dec_b.astype(dtype)
        self.embedding.astype(dtype)
        self.decoder.astype(dtype)
        for layer in self.layers:
            layer.W.astype(dtype)
            layer.b = layer.b.astype(dtype)
        return self

    def zero_state(self, batch):
        return [layer.zero_state(batch, self.dtype) for layer in self.layers]

    def set_training(self, training):
        for M in self.matrices.values():
            M.training = training

    # --- forward / backward --------------------------------------------------------------------
    def _dropout(self, a, rng):
        if rng is None or self.dropout == 0.0:
            return a, None
        mask = (rng.random(a.shape, dtype=np.float32) >= self.dropout).astype(a.dtype) / (1.0 - self.dropout)
        return a * mask, mask

    def forward(self, x, state, targets=None, rng=None, distill=None):
        """x: (T, B) token ids; state: per layer (h, c); targets: (T, B) token ids or None. Dropout is
        on when an rng is given. With a `DistillTarget` (and targets), the loss adds the distillation
        terms: kl_weight * KL(teacher || student) of the output distributions and hidden_weight * the
        mean squared difference of each layer's hidden states, both averaged over tokens.

        Returns Forward(logits, loss, state, cache): logits (T, B, V); loss the mean objective per
        token in nats (the cross-entropy alone without distillation; None without targets); the new
        state; the cache `backward` consumes (None without targets), whose "parts" give the loss's
        terms: {"task": cross-entropy, "kl": ..., "hidden": ...}."""
        T, B = x.shape
        layer_in, mask = self._dropout(self.embedding.rows(x), rng)  # (T, B, H)
        masks, steps, new_state, hidden = [mask], [], [], []
        for layer, s in zip(self.layers, state):
            hs, s_out, layer_steps = layer.forward(layer_in, s)  # (T, B, H)
            new_state.append(s_out)
            steps.append(layer_steps)
            hidden.append(hs)
            layer_in, mask = self._dropout(hs, rng)
            masks.append(mask)
        h = layer_in.reshape(T * B, self.hidden_size)         # (TB, H)
        logits, dec_cache = self.decoder.forward(h)           # (TB, V)
        logits += self.dec_b
        if targets is None:
            if distill is not None:
                raise ValueError("distill needs targets: distillation adds to the task loss")
            return Forward(logits.reshape(T, B, -1), None, new_state, None)
        row_max = logits.max(axis=1, keepdims=True)           # (TB, 1)
        shifted = logits - row_max if distill is not None else None
        probs, sums, logp_y = softmax_cross_entropy(logits, targets.reshape(-1), row_max)  # (TB, V), (TB,), (TB,)
        parts = {"task": float(-np.mean(logp_y))}
        if distill is not None:
            parts.update(distill_losses(distill, shifted, sums, hidden))
        loss = parts["task"] + parts.get("kl", 0.0) + parts.get("hidden", 0.0)
        cache = {"x": x, "y": targets, "masks": masks, "steps": steps, "h": h, "dec": dec_cache,
                 "probs": probs, "sums": sums, "hidden": hidden, "distill": distill, "parts": parts}
        return Forward(logits.reshape(T, B, -1), loss, new_state, cache)

    def backward(self, cache, scale=1.0):
        """Gradients of scale * loss for every parameter: {name: array}. The softmax in `cache` is
        turned into the gradient of the logits in place (no copy of a (T*B, V) array per step), so
        a cache serves one backward; a second call raises instead of returning wrong gradients."""
        dlogits = logits_gradient(cache, scale)              # checks the cache first
        x, d = cache["x"], cache["distill"]
        T, B = x.shape
        dh, grads = self.decoder.backward(dlogits, cache["dec"])
        grads = {f"dec.{k}": v for k, v in grads.items()}
        grads["dec_b"] = dlogits.sum(axis=0)
        dlayer = dh.reshape(T, B, self.hidden_size)
        for l in reversed(range(self.num_layers)):
            if cache["masks"][l + 1] is not None:
                dlayer = dlayer * cache["masks"][l + 1]
            if d is not None and d.hidden_weight:             # d mean((h - t)^2) / dh
                dlayer = dlayer + (2.0 * d.hidden_weight * scale / dlayer.size) * (cache["hidden"][l] - d.hidden[l])
            dlayer, g, _ = self.layers[l].backward(dlayer, cache["steps"][l])
            grads.update({f"lstm{l}.{k}": v for k, v in g.items()})
        if cache["masks"][0] is not None:
            dlayer = dlayer * cache["masks"][0]
        grads.update({f"embed.{k}": v for k, v in self.embedding.rows_backward(x, dlayer).items()})
        return grads

    def matrix_inputs(self, cache):
        """{name in `matrices`: (N, n)}: the rows each gate matrix multiplied in the forward that made
        `cache` (every timestep's [x_t, h_(t-1)] of an LSTM layer), for diagnostics of its branches."""
        return {f"lstm{l}": stack_caches([s[0] for s in steps])[0] for l, steps in enumerate(cache["steps"])}

    def teacher_outputs(self, x, state, targets, kl_weight, hidden_weight):
        """This model as a teacher on one window (no dropout): (DistillTarget, its new state)."""
        self.set_training(False)
        out = self.forward(x, state, targets)
        probs = out.cache["probs"] / out.cache["sums"][:, None]   # (TB, V)
        return DistillTarget(probs, out.cache["hidden"], float(kl_weight), float(hidden_weight)), out.state
