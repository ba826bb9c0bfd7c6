"""What a run records while it trains, for the study's metrics: perplexity with S on, off or pruned
further, the statistics of the structured and the sparse branch, and the training hooks that take
them along the way (`CMATracker` along the anneal, `PerplexityProbe` on a fixed grid of epochs,
`SwitchProbe` around a dense warm-up's switch, `LossTrace`). The runner (`dkp.study.runner`) installs
them; the course's widgets read the same functions.
"""
from __future__ import annotations

import numpy as np

from dkp.compression.anneal import doped_density, doped_layers
from dkp.core.data import batchify, bptt_windows
from dkp.core.model import gate_matrices
from dkp.training.evaluate import evaluate


def perplexity(model, ids, batch, bptt, s_enabled=True):
    """Perplexity of `ids` with S switched on or off in every doped matrix (no dropout)."""
    layers = doped_layers(model)
    saved = [W.s_enabled for _, W in layers]
    try:
        for _, W in layers:
            W.s_enabled = s_enabled
        return evaluate(model, ids, batch, bptt)
    finally:
        for (_, W), s in zip(layers, saved):
            W.s_enabled = s


def branch_statistics(model, ids, batch, bptt):
    """Per doped gate matrix, over every input row x it multiplies on `ids` (an LSTM layer's
    [x_t, h_(t-1)]; `model.matrix_inputs`): the mean norms of the two branch outputs
    ||structured(x)|| and ||S x||, the mean cosine between them, and the share of the output's
    energy carried by S: mean ||S x||^2 / (||struct||^2 + ||S x||^2). "layer" is the matrix's place
    among the gate matrices (an LSTM's layer), "matrix" its name."""
    layers = doped_layers(model)
    if not layers:
        return []
    model.set_training(False)
    place = {name: l for l, name in enumerate(gate_matrices(model))}
    stream = batchify(ids, batch)
    state = model.zero_state(batch)
    xs = {name: [] for name, _ in layers}
    for x, y in bptt_windows(stream, bptt):
        out = model.forward(x, state, y)
        state, inputs = out.state, model.matrix_inputs(out.cache)
        for name, _ in layers:
            xs[name].append(inputs[name])                    # (rows, n)
    out = []
    for name, W in layers:
        xh = np.concatenate(xs[name]).astype(np.float64)
        a = W.structured_forward(xh.astype(W.dtype)).astype(np.float64)   # (N, m)
        s = W.sparse_forward(xh.astype(W.dtype)).astype(np.float64)       # (N, m)
        na, ns = np.linalg.norm(a, axis=1), np.linalg.norm(s, axis=1)
        cos = np.sum(a * s, axis=1) / np.maximum(na * ns, 1e-30)
        out.append({"layer": place[name], "matrix": name, "density": W.density, "norm_structured": float(na.mean()),
                    "norm_sparse": float(ns.mean()), "cosine": float(cos.mean()),
                    "sparse_share": float(np.mean(ns ** 2 / np.maximum(na ** 2 + ns ** 2, 1e-30)))})
    return out


def cma_point(model, ids, batch, bptt, stats_tokens=None):
    """One point of the CMA record: perplexity with and without S, and the branch statistics (on
    the first `stats_tokens` of `ids` when given, else on all of them)."""
    return {"ppl": perplexity(model, ids, batch, bptt), "ppl_s_off": perplexity(model, ids, batch, bptt, False),
            "layers": branch_statistics(model, ids[:stats_tokens] if stats_tokens else ids, batch, bptt)}


def perplexity_s_pruned(model, ids, batch, bptt, fraction):
    """Perplexity of `ids` after pruning S further, without retraining: every doped matrix keeps the
    largest `fraction` of its current entries (at least one). The model is left as it was."""
    layers = doped_layers(model)
    saved = [(W.indptr, W.indices, W.params["S"]) for _, W in layers]
    try:
        for _, W in layers:
            W.set_density(max(W.density * fraction, 1.0 / (W.shape[0] * W.shape[1])))
        return perplexity(model, ids, batch, bptt)
    finally:
        for (_, W), (indptr, indices, values) in zip(layers, saved):
            W.indptr, W.indices, W.params["S"] = indptr, indices, values
            W._reset_dense()


class CMATracker:
    """A training hook that records `cma_point` on a validation slice at `points` evenly spaced
    steps of the anneal window (and once more at the end of training, via `finish`), into
    trainer.history["cma"] as dicts with the step, the epoch and the density of S."""

    def __init__(self, annealer, ids, points=8, batch=10, bptt=35, stats_tokens=None):
        self.ids, self.batch, self.bptt, self.stats_tokens = ids, batch, bptt, stats_tokens
        span = annealer.end - annealer.start
        self.steps = sorted({annealer.start + int(round(span * k / max(points - 1, 1))) for k in range(points)})
        self.annealer = annealer

    def record(self, trainer, step):
        point = {"step": step, "epoch": step / max(trainer.steps_per_epoch, 1),
                 "density": doped_density(trainer.model),
                 **cma_point(trainer.model, self.ids, self.batch, self.bptt, self.stats_tokens)}
        trainer.history.setdefault("cma", []).append(point)
        return point

    def __call__(self, trainer, step):
        if step in self.steps:
            self.record(trainer, step)


class SwitchProbe:
    """A training hook that records the perplexity of `ids` at the step of a dense warm-up's switch
    into trainer.history["switch"][key]: put one among the trainer's `before_changes` ("before":
    the dense teacher) and one among its `hooks` ("after": the compressed model before any
    retraining, the accuracy the decomposition alone keeps; the anneal changes nothing at the
    switch, whose window starts there or later in every arm)."""

    def __init__(self, step, key, ids, batch=10, bptt=35):
        self.step, self.key, self.ids, self.batch, self.bptt = step, key, ids, batch, bptt

    def __call__(self, trainer, step):
        if step == self.step:
            record = trainer.history.setdefault("switch", {"step": step, "epoch": step / trainer.steps_per_epoch})
            record[f"valid_ppl_{self.key}"] = perplexity(trainer.model, self.ids, self.batch, self.bptt)


class PerplexityProbe:
    """A training hook that records the perplexity of a validation slice (S on) every `every`
    epochs, at the same epochs in every arm whatever its anneal, into trainer.history["probes"] as
    {step, epoch, density, ppl}; `record` adds a point by hand (the end of training)."""

    def __init__(self, ids, every, batch=10, bptt=35):
        if not every > 0:
            raise ValueError(f"every must be a positive number of epochs, got {every!r}")
        self.ids, self.every, self.batch, self.bptt = ids, every, batch, bptt

    def record(self, trainer):
        point = {"step": trainer.step, "epoch": trainer.step / max(trainer.steps_per_epoch, 1),
                 "density": doped_density(trainer.model),
                 "ppl": perplexity(trainer.model, self.ids, self.batch, self.bptt)}
        trainer.history.setdefault("probes", []).append(point)
        return point

    def __call__(self, trainer, step):
        k = round(step / (self.every * trainer.steps_per_epoch))  # the grid point nearest this step
        if k > 0 and step == round(k * self.every * trainer.steps_per_epoch):
            self.record(trainer)


class LossTrace:
    """A hook that records the mean training loss (nats per token) of every `every` steps into
    trainer.history["loss_trace"] as [step, loss] pairs: where a run goes wrong, to the window."""

    def __init__(self, every):
        self.every, self.total, self.count = int(every), 0.0, 0

    def __call__(self, trainer, step):
        loss = trainer.last_loss
        if loss is None or step == 0:
            return
        self.total, self.count = self.total + loss, self.count + 1
        if self.count == self.every:
            trainer.history.setdefault("loss_trace", []).append([step, self.total / self.count])
            self.total, self.count = 0.0, 0
