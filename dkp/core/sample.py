"""Text from a trained language model: temperature sampling, one token at a time.

Generation feeds each drawn token back in as the next input, so the model runs with T = 1 and its
state is carried from step to step: the LSTM's (h, c) of every layer, as evaluation carries it
across BPTT windows; the transformer's key/value cache, so each new token attends to all before it
without recomputing them. A transformer has positions for `block_size` tokens: a prompt and
n_tokens that would pass it are an error naming n_tokens (nanoGPT crops the context to the last
block_size tokens instead, rerunning it without a cache at every step: another sampler, and its
text no longer sees the prompt's start). The distribution of the next token is softmax(logits / temperature): temperature 1 is the
model's own distribution, lower is more conservative, and temperature 0 takes the argmax (greedy).
"""
from __future__ import annotations

import numpy as np

from dkp.core.data import EOS


def draw(scores, temperature, rng):
    """One token id from softmax(scores / temperature); temperature 0 is the argmax. scores: (V,)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return int(np.argmax(scores))
    z = np.asarray(scores, np.float64) / temperature
    p = np.exp(z - z.max())                                  # unnormalised, the largest is 1
    cdf = np.cumsum(p)
    return int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))


def sample(model, prompt, n_tokens, temperature=1.0, seed=0):
    """Continue `prompt` (a non-empty sequence of token ids) by `n_tokens` sampled ids.

    The prompt is run through the model in one call (T = len(prompt), B = 1), then each new token is
    drawn and fed back. `seed` is an int or a numpy Generator; the same seed gives the same tokens."""
    prompt = np.asarray(prompt, dtype=np.int64)
    if prompt.ndim != 1 or prompt.size == 0:
        raise ValueError(f"prompt must be a non-empty 1-D sequence of token ids, got shape {prompt.shape}")
    if prompt.min() < 0 or prompt.max() >= model.vocab_size:
        raise ValueError(f"prompt ids must lie in [0, {model.vocab_size}), got {prompt.min()}..{prompt.max()}")
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
    block_size = getattr(model, "block_size", None)   # the transformer's context; the LSTM has no limit
    if block_size is not None and prompt.size + n_tokens > block_size:
        raise ValueError(f"n_tokens = {n_tokens} after a prompt of {prompt.size} token(s) makes {prompt.size + n_tokens} "
                         f"positions, more than the model's block_size = {block_size} (at most "
                         f"{max(block_size - prompt.size, 0)} here)")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    rng = np.random.default_rng(seed)
    model.set_training(False)                                # no co-matrix dropout
    scores, _, state, _ = model.forward(prompt[:, None], model.zero_state(1))  # (T, 1, V), no targets
    out = np.empty(n_tokens, np.int64)
    for i in range(n_tokens):
        out[i] = draw(scores[-1, 0], temperature, rng)
        scores, _, state, _ = model.forward(out[i:i + 1, None], state)
    return out


def generate(model, vocab, prompt=EOS, n_tokens=50, temperature=1.0, seed=0):
    """Sample `n_tokens` words after `prompt` (a string of space-separated words; words outside the
    vocabulary become <unk>) and return them as text, one sentence a line (<eos> ends a line)."""
    ids = sample(model, vocab.encode(prompt.split(), name="the prompt"), n_tokens, temperature, seed)
    lines, words = [], []
    for word in vocab.decode(ids):
        if word == EOS:
            lines.append(" ".join(words))
            words = []
        else:
            words.append(word)
    if words:
        lines.append(" ".join(words))
    return "\n".join(lines)
