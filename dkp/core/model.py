"""The language model: embedding -> L LSTM layers -> linear decoder -> softmax cross-entropy.

Dropout (inverted, masks drawn from a NumPy Generator) sits only on non-recurrent connections, as in
Zaremba et al.: on the embedding output, between LSTM layers and before the decoder.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dkp.core.lstm import LSTMLayer
from dkp.core.weights import Dense


def dense_gates(layer, shape, rng, init_scale, dtype):
    """The default gate-matrix factory: a dense U(-init_scale, init_scale) matrix."""
    return Dense.init(shape, rng, init_scale, dtype)


class Forward(NamedTuple):
    """What `LanguageModel.forward` returns."""
    logits: np.ndarray          # (T, B, V)
    loss: float | None          # mean cross-entropy per token (nats), None without targets
    state: list                 # per layer (h, c), to carry into the next window
    cache: dict | None          # for `backward`, None without targets


class LanguageModel:
    def __init__(self, vocab_size, hidden_size, num_layers, *, dropout=0.0, init_scale=0.1, seed=0,
                 dtype=np.float32, gate_factory=dense_gates):
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        V, H = vocab_size, hidden_size
        rng = np.random.default_rng(seed)
        u = lambda *shape: rng.uniform(-init_scale, init_scale, size=shape).astype(dtype)  # noqa: E731
        self.vocab_size, self.hidden_size, self.num_layers = V, H, num_layers
        self.dropout, self.dtype = dropout, np.dtype(dtype)
        self.embed = u(V, H)                                 # (V, H)
        self.layers = [LSTMLayer(gate_factory(l, (4 * H, 2 * H), rng, init_scale, dtype), u(4 * H), H, H)
                       for l in range(num_layers)]
        self.dec_W, self.dec_b = u(V, H), u(V)               # (V, H), (V,)

    # --- parameters ------------------------------------------------------------------------
    @property
    def params(self):
        """{name: array}, rebuilt on each call (a doped matrix may replace its arrays)."""
        p = {"embed": self.embed}
        for l, layer in enumerate(self.layers):
            p.update({f"lstm{l}.{k}": v for k, v in layer.params.items()})
        p["dec_W"], p["dec_b"] = self.dec_W, self.dec_b
        return p

    def astype(self, dtype):
        """Cast every parameter (float64 for gradient checks); returns self."""
        self.dtype = np.dtype(dtype)
        self.embed, self.dec_W, self.dec_b = (a.astype(dtype) for a in (self.embed, self.dec_W, self.dec_b))
        for layer in self.layers:
            layer.W.astype(dtype)
            layer.b = layer.b.astype(dtype)
        return self

    def zero_state(self, batch):
        return [layer.zero_state(batch, self.dtype) for layer in self.layers]

    def set_training(self, training):
        for layer in self.layers:
            layer.W.training = training

    # --- forward / backward --------------------------------------------------------------------
    def _dropout(self, a, rng):
        if rng is None or self.dropout == 0.0:
            return a, None
        mask = (rng.random(a.shape, dtype=np.float32) >= self.dropout).astype(a.dtype) / (1.0 - self.dropout)
        return a * mask, mask

    def forward(self, x, state, targets=None, rng=None):
        """x: (T, B) token ids; state: per layer (h, c); targets: (T, B) token ids or None. Dropout is
        on when an rng is given.

        Returns Forward(logits, loss, state, cache): logits (T, B, V); loss the mean cross-entropy per
        token in nats (None without targets); the new state; the cache `backward` consumes (None
        without targets)."""
        T, B = x.shape
        layer_in, mask = self._dropout(self.embed[x], rng)   # (T, B, H)
        masks, steps, new_state = [mask], [], []
        for layer, s in zip(self.layers, state):
            hs, s_out, layer_steps = layer.forward(layer_in, s)  # (T, B, H)
            new_state.append(s_out)
            steps.append(layer_steps)
            layer_in, mask = self._dropout(hs, rng)
            masks.append(mask)
        h = layer_in.reshape(T * B, self.hidden_size)         # (TB, H)
        logits = h @ self.dec_W.T                             # (TB, V)
        logits += self.dec_b
        if targets is None:
            return Forward(logits.reshape(T, B, -1), None, new_state, None)
        probs = logits - logits.max(axis=1, keepdims=True)    # (TB, V), softmax up to its sum
        np.exp(probs, out=probs)
        sums = probs.sum(axis=1)                              # (TB,)
        yf = targets.reshape(-1)
        loss = float(np.mean(np.log(sums) - np.log(probs[np.arange(T * B), yf])))
        cache = {"x": x, "y": targets, "masks": masks, "steps": steps, "h": h, "probs": probs, "sums": sums}
        return Forward(logits.reshape(T, B, -1), loss, new_state, cache)

    def backward(self, cache, scale=1.0):
        """Gradients of scale * loss for every parameter: {name: array}. The softmax in `cache` is
        turned into the gradient of the logits in place (no copy of a (T*B, V) array per step), so
        a cache serves one backward; a second call raises instead of returning wrong gradients."""
        if cache is None:
            raise ValueError("backward needs the cache of a forward with targets (it had none)")
        if cache["probs"] is None:
            raise RuntimeError("this cache was already used by backward, which overwrites it; run forward "
                               "again for another backward")
        x, h, probs = cache["x"], cache["h"], cache["probs"]
        cache["probs"] = None
        T, B = x.shape
        N = T * B
        dlogits = probs                                       # (TB, V), overwritten in place
        dlogits *= (scale / N) / cache["sums"][:, None]
        dlogits[np.arange(N), cache["y"].reshape(-1)] -= scale / N
        grads = {"dec_W": dlogits.T @ h, "dec_b": dlogits.sum(axis=0)}
        dlayer = (dlogits @ self.dec_W).reshape(T, B, self.hidden_size)
        for l in reversed(range(self.num_layers)):
            if cache["masks"][l + 1] is not None:
                dlayer = dlayer * cache["masks"][l + 1]
            dlayer, g, _ = self.layers[l].backward(dlayer, cache["steps"][l])
            grads.update({f"lstm{l}.{k}": v for k, v in g.items()})
        if cache["masks"][0] is not None:
            dlayer = dlayer * cache["masks"][0]
        dembed = np.zeros_like(self.embed)
        np.add.at(dembed, x.reshape(-1), dlayer.reshape(N, self.hidden_size))
        grads["embed"] = dembed
        return grads
