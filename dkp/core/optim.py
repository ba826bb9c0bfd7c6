"""Optimizers (SGD, Adam, AdamW), global gradient-norm clipping and the learning-rate schedules
(Zaremba's per epoch; linear warm-up then cosine decay per step).

Optimizers update the parameter arrays in place and keep their state keyed by parameter name, so a
checkpoint can save and restore it as plain arrays.
"""
from __future__ import annotations

import math

import numpy as np


def global_norm(grads):
    return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))


def clip_global_norm(grads, max_norm):
    """Scale all gradients in place so their joint L2 norm is at most max_norm; returns the norm."""
    norm = global_norm(grads)
    if max_norm and norm > max_norm:
        s = max_norm / norm
        for g in grads.values():
            g *= s
    return norm


def zaremba_lr(epoch, lr, decay, decay_after):
    """Learning rate of the 0-based `epoch`: lr for the first `decay_after` epochs, then divided by
    `decay` each epoch (Zaremba small: lr 1, decay 2 after 4 epochs)."""
    return lr / decay ** max(epoch + 1 - decay_after, 0)


COSINE_FLOOR = 0.1   # the cosine schedule ends at this fraction of lr (nanoGPT's min_lr = lr / 10)


def cosine_lr(step, lr, warmup_steps, total_steps, floor=COSINE_FLOOR):
    """Learning rate of the 0-based `step` of `total_steps`: a linear warm-up, lr * (step + 1) /
    warmup_steps over the first `warmup_steps` steps, then a cosine from lr down to floor * lr at
    the last step (and floor * lr after it)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = total_steps - 1 - warmup_steps
    frac = min(1.0, (step - warmup_steps) / span) if span > 0 else 1.0
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac)))


class SGD:
    name = "sgd"

    def __init__(self, lr=1.0):
        self.lr = lr

    def step(self, params, grads):
        for k, g in grads.items():
            params[k] -= self.lr * g

    def state_arrays(self):
        return {}

    def load_state_arrays(self, arrays):
        pass


class Adam:
    name = "adam"

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m, self.v, self.t = {}, {}, 0

    def step(self, params, grads):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        a = self.lr * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for k, g in grads.items():
            if k not in self.m or self.m[k].shape != g.shape:
                self.m[k], self.v[k] = np.zeros_like(g), np.zeros_like(g)
            m, v = self.m[k], self.v[k]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            params[k] -= a * m / (np.sqrt(v) + self.eps)

    def reindex(self, name, keep):
        """Keep only the moments at positions `keep` of parameter `name` (after S is re-masked)."""
        if name in self.m:
            self.m[name], self.v[name] = self.m[name][keep], self.v[name][keep]

    def state_arrays(self):
        out = {"t": np.array(self.t)}
        out.update({f"m.{k}": v for k, v in self.m.items()})
        out.update({f"v.{k}": v for k, v in self.v.items()})
        return out

    def load_state_arrays(self, arrays):
        self.t = int(arrays.get("t", 0))
        self.m = {k[2:]: v for k, v in arrays.items() if k.startswith("m.")}
        self.v = {k[2:]: v for k, v in arrays.items() if k.startswith("v.")}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019; PyTorch's AdamW): before each
    Adam update, every parameter of two or more dimensions (the weight matrices and the embeddings,
    as nanoGPT decays) shrinks by lr * weight_decay of itself; biases, LayerNorm gains and the
    values of a sparse S (1-D) are not decayed. The moments are Adam's."""
    name = "adamw"

    def __init__(self, lr=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(lr, beta1, beta2, eps)
        self.weight_decay = float(weight_decay)

    def step(self, params, grads):
        keep = 1.0 - self.lr * self.weight_decay
        if keep != 1.0:
            for k in grads:
                if params[k].ndim >= 2:
                    params[k] *= keep
        super().step(params, grads)


def make_optimizer(name, lr, weight_decay=0.0):
    """The optimizer `name` ("sgd", "adam" or "adamw", the last with `weight_decay`) at rate lr."""
    if name == "sgd":
        return SGD(lr)
    if name == "adam":
        return Adam(lr)
    if name == "adamw":
        return AdamW(lr, weight_decay)
    raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {name!r}")
