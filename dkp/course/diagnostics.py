"""Co-matrix adaptation (CMA) for the course's explorers: what co-matrix dropout makes of S (its
effective S, the noise it adds), and a trained doped model pruned to any density with its
perplexity with S on and off (`cma_state`, behind notebook 05's explorer). The measurements a run
records while it trains (perplexity with S off, branch statistics, the training hooks) are the
study's: `dkp.study.probes`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dkp.compression.anneal import doped_layers
from dkp.core.checks import check_density
from dkp.core.weights.sparse import n_keep
from dkp.study.probes import branch_statistics, perplexity


def effective_S(W, rng, repeats=2, training=True):
    """S as one forward of `W` (a Doped matrix) uses it, read through the protocol: begin_batch(rng),
    then forward the n unit vectors, `repeats` times in one batch, and subtract the structured branch.
    Returns (repeats, m, n): one S_eff per copy of the unit vectors (equal copies mean the mask was
    shared by every row of the minibatch). W's `training` flag is restored."""
    m, n = W.shape
    eye = np.eye(n, dtype=W.dtype)
    x = np.concatenate([eye] * int(repeats))
    saved = W.training
    try:
        W.training = bool(training)
        W.begin_batch(rng)
        s = W.forward(x)[0] - W.structured_forward(x)               # (repeats * n, m)
    finally:
        W.training = saved
    return s.reshape(repeats, n, m).transpose(0, 2, 1)


def cmr_statistics(W, draws=200, seed=0, repeats=2):
    """What co-matrix dropout does to S over `draws` training minibatches of `W` (a Doped matrix with
    cmr_p and cmr_variant set), from `effective_S`:

    keep_rate         fraction of (draw, copy, stored entry) where S_eff is not zero
    branch_keep_rate  fraction of (draw, copy) where any entry of S_eff is not zero
    scales            min and max of S_eff / S over kept entries (inverted scaling: 1 / (1 - p))
    shared_in_batch   every draw's copies equal (one mask for the whole minibatch)
    all_or_nothing    every draw keeps all entries or none
    mean_ratio        mean over draws of S_eff, divided by S, averaged over entries (1 in expectation)
    eval_max_diff     max |forward in evaluation - (structured + S) x| over the unit vectors
    """
    rng = np.random.default_rng(seed)
    S = W.sparse_dense()
    on = S != 0
    effs = np.stack([effective_S(W, rng, repeats) for _ in range(int(draws))])   # (draws, repeats, m, n)
    kept = (effs != 0) & on
    ratio = effs[kept] / np.broadcast_to(S, effs.shape)[kept]
    per_copy = kept.reshape(draws, repeats, -1).any(-1)                          # (draws, repeats)
    n_on = int(on.sum())
    counts = kept.reshape(draws, -1).sum(-1)
    eye = np.eye(W.shape[1], dtype=W.dtype)
    saved = W.training
    W.training = False
    try:
        y_eval = W.forward(eye)[0]
    finally:
        W.training = saved
    want = eye @ (W.structured.to_dense() + S).T
    return {
        "p": W.cmr_p, "variant": W.cmr_variant, "draws": int(draws), "nnz": n_on,
        "keep_rate": float(kept.sum() / (draws * repeats * n_on)),
        "branch_keep_rate": float(per_copy.mean()),
        "scales": (float(ratio.min()), float(ratio.max())) if ratio.size else (None, None),
        "shared_in_batch": bool(all(np.array_equal(e[0], e[k]) for e in effs for k in range(1, repeats))),
        "all_or_nothing": bool(np.all((counts == 0) | (counts == repeats * n_on))),
        "mean_ratio": float(np.mean(effs.mean(0)[:, on] / S[on])),
        "eval_max_diff": float(np.abs(y_eval - want).max()),
    }


def relative_noise(W, x, draws=200, seed=0):
    """Root-mean-square deviation of the sparse branch's training output from S x, relative to the
    root-mean-square of S x, over `draws` minibatches of inputs `x` (B, n). For element-wise ("output")
    and whole-branch dropout it is sqrt(p / (1 - p)) in expectation."""
    rng = np.random.default_rng(seed)
    clean = W.sparse_forward(x).astype(np.float64)
    saved = W.training
    W.training = True
    try:
        dev = []
        for _ in range(int(draws)):
            W.begin_batch(rng)
            s = W.forward(x)[0].astype(np.float64) - W.structured_forward(x).astype(np.float64)
            dev.append(np.mean((s - clean) ** 2))
    finally:
        W.training = saved
    return float(np.sqrt(np.mean(dev) / np.mean(clean ** 2)))


def trained_density(model):
    """The density of S the model was trained to: the lowest over its doped layers (they are
    annealed together). ValueError when the model has no doped layer."""

    layers = doped_layers(model)
    if not layers:
        raise ValueError("the model has no doped layer (W = structured + S): train it with doping > 0")
    return min(W.density for _, W in layers)


def density_options(density, lowest=0.01, n=9):
    """`n` log-spaced densities from `density` (first, exactly) down to `density * lowest`."""
    density, lowest = float(density), float(lowest)
    if not 0.0 < density <= 1.0 or not 0.0 < lowest < 1.0 or int(n) < 2:
        raise ValueError(f"need 0 < density <= 1, 0 < lowest < 1 and n >= 2, got {density}, {lowest}, {n}")
    values = np.geomspace(density, density * lowest, int(n))
    values[0] = density
    return [float(v) for v in values]


def pruned_copy(model, density):
    """A deep copy of `model` whose doped layers keep only the round(density * m * n) entries of S of
    largest magnitude (`Doped.set_density`, as the anneal does). `model` itself is never changed.
    ValueError when `density` would need entries a layer no longer holds."""
    import copy


    density = check_density(density)
    clone = copy.deepcopy(model)
    for name, W in doped_layers(clone):
        k = n_keep(density, W.shape[0] * W.shape[1])
        if k > W.nnz:
            raise ValueError(_above_trained(density, W.density, name))
        if k < W.nnz:
            W.set_density(density)
    return clone


def _above_trained(density, held, layer=None):
    where = f"{layer}'s S" if layer is not None else "S"
    return (f"density {density:.4g} is above the trained density {held:.4g}: {where} stores only that "
            f"fraction of its entries, because the anneal pruned the rest and their values are gone. "
            f"A density can only be lowered, never restored.")


@dataclass(frozen=True)
class CMAState:
    """What the CMA explorer shows for a doped model with S pruned to `density` and switched on or off.

    ppl: perplexity of the slice as the model runs (S at `density`, or S off: structured part alone);
    layers: per doped layer, `dkp.study.probes.branch_statistics` of the model with S on at `density`
    (mean norms of the two branch outputs, sparse share, cosine); nnz: entries of S kept, all layers.
    When the request is impossible, `error` says why and the numbers are None."""
    density: float
    trained_density: float | None
    s_enabled: bool
    error: str | None = None
    ppl: float | None = None
    nnz: int | None = None
    layers: tuple = ()

    @property
    def valid(self):
        return self.error is None


def cma_state(model, ids, density, s_enabled=True, batch=10, bptt=20):
    """Perplexity of `ids` and the branch statistics of `model` with S pruned to `density` (by
    magnitude, on a copy) and switched on or off. Never raises on a bad density: an impossible one
    comes back with `error` set. `model` is left exactly as it was."""

    s_enabled = bool(s_enabled)
    try:
        held = trained_density(model)
    except ValueError as e:
        return CMAState(float("nan"), None, s_enabled, error=str(e))
    try:
        d = float(density)
    except (TypeError, ValueError):
        return CMAState(float("nan"), held, s_enabled, error=f"density must be a number, got {density!r}")
    if not 0.0 < d <= 1.0:
        return CMAState(d, held, s_enabled,
                        error=f"density must be in (0, 1] (the fraction of S's entries kept), got {d:g}")
    try:
        clone = pruned_copy(model, d)
    except ValueError as e:
        return CMAState(d, held, s_enabled, error=str(e))
    ppl = perplexity(clone, ids, batch, bptt, s_enabled=s_enabled)
    stats = tuple(branch_statistics(clone, ids, batch, bptt))    # S on (the clone's flags are restored)
    return CMAState(d, held, s_enabled, ppl=ppl, nnz=int(sum(W.nnz for _, W in doped_layers(clone))), layers=stats)
