"""Finite-difference gradient checks (run them in float64).

`entrywise` perturbs single entries of an array; `directional` compares the analytic directional
derivative sum(g * d) with (f(p + eps d) - f(p - eps d)) / 2 eps along random directions d of all
parameters at once, which checks a whole model in a handful of evaluations.
"""
from __future__ import annotations

import numpy as np


def rel_error(a, b):
    """Norm-wise relative error ||a - b|| / (||a|| + ||b||): per-entry ratios would be dominated by
    the round-off of the finite difference on entries whose true gradient is nearly zero."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def entrywise(f, array, analytic, eps=1e-5, max_entries=None, rng=None, entries=None):
    """Max relative error between `analytic` (same shape as `array`) and central differences of the
    scalar function f() with respect to the entries of `array` (perturbed in place, then restored).
    `entries` (flat indices) selects the entries to check; with max_entries, a random subset is."""
    idx = np.arange(array.size) if entries is None else np.asarray(entries)
    if max_entries is not None and len(idx) > max_entries:
        idx = (rng or np.random.default_rng(0)).choice(idx, max_entries, replace=False)
    numeric = np.empty(len(idx))
    for j, i in enumerate(idx):
        at = np.unravel_index(i, array.shape)  # index the array itself: it may be a strided view
        old = array[at]
        array[at] = old + eps
        fp = f()
        array[at] = old - eps
        fm = f()
        array[at] = old
        numeric[j] = (fp - fm) / (2 * eps)
    return rel_error(analytic.reshape(-1)[idx], numeric)


def directional(f, params, grads, rng, n_dirs=3, eps=1e-5):
    """Max relative error of directional derivatives along `n_dirs` random unit-scale directions.
    params, grads: {name: array}; params are perturbed in place and restored."""
    errors = []
    for _ in range(n_dirs):
        dirs = {k: rng.standard_normal(p.shape) for k, p in params.items()}
        analytic = sum(float(np.sum(grads[k] * d)) for k, d in dirs.items())
        for k, d in dirs.items():
            params[k] += eps * d
        fp = f()
        for k, d in dirs.items():
            params[k] -= 2 * eps * d
        fm = f()
        for k, d in dirs.items():
            params[k] += eps * d
        errors.append(rel_error(analytic, (fp - fm) / (2 * eps)))
    return max(errors)
