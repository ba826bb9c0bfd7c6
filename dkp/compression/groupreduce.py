"""GroupReduce: the embedding and softmax matrices compressed by frequency-grouped low rank, and the
two baselines it is measured against at the same budget (one truncated SVD, magnitude pruning).

After Chen, Si, Li, Chelba and Hsieh, "GroupReduce: Block-Wise Low-Rank Approximation for Neural
Language Model Shrinking" (NeurIPS 2018). A (V, H) matrix E over the vocabulary, and the words'
frequencies f from the training split:

1. sort the words by frequency and split them into c groups of (nearly) equal size;
2. give each group a rank growing with its mean frequency, all ranks together meeting the budget
   (dkp's rule: r_g proportional to mean(f_g) ** alpha, alpha = 1/2 by default, scaled to the budget);
3. in each group, a frequency-weighted truncated SVD: the best rank-r_g approximation of
   diag(sqrt(f)) E_g, then the weighting undone, so the error is sum_w f_w ||e_w - e'_w||^2:
   a frequent word's row is reconstructed more faithfully;
4. refine: move words to the group whose subspace reconstructs them best, then redo step 3. dkp
   keeps the budget exact by swapping words between neighbouring groups in pairs (a word moves only
   if another moves the other way and the pair's weighted error falls), so the group sizes and
   ranks, and with them the parameter count, never change.

The result is a `GroupLowRank` matrix; retraining its factors (training the model on) follows.
Every function takes the matrix in any float dtype and computes in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dkp.compression import shapes
from dkp.compression.compress import nearest_kronecker, truncated_svd
from dkp.core.weights import Dense, Pruned
from dkp.core.weights.grouped import GroupLowRank


def _matrix(E):
    E = np.asarray(E)
    if E.ndim != 2 or E.dtype.kind != "f":
        raise ValueError(f"E must be a 2-D floating matrix (vocabulary x hidden), got shape {E.shape} and "
                         f"dtype {E.dtype}")
    return E


def word_frequencies(ids, vocab_size):
    """Relative frequency of each word id in the token stream `ids`, (vocab_size,), with add-one
    smoothing so that a word unseen in training still has a (small) positive weight."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"ids must be a 1-D integer token stream, got shape {ids.shape} and dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"ids must lie in [0, {vocab_size}), got values in [{ids.min()}, {ids.max()}]")
    counts = np.bincount(ids, minlength=vocab_size).astype(np.float64) + 1.0
    return counts / counts.sum()


def budget_params(shape, compression):
    """The parameters a (V, H) matrix may keep at `compression` (> 1)."""
    if not compression > 1:
        raise ValueError(f"compression must be > 1, got {compression!r}")
    return int(shape[0] * shape[1] // compression)


def frequency_groups(freq, n_groups):
    """Word ids sorted by decreasing frequency (ties by id), and the c + 1 group boundaries in it."""
    freq = np.asarray(freq, np.float64)
    V = len(freq)
    if not 1 <= int(n_groups) <= V:
        raise ValueError(f"n_groups must be an integer in [1, {V}] (the vocabulary size), got {n_groups!r}")
    order = np.lexsort((np.arange(V), -freq))
    return order, np.linspace(0, V, int(n_groups) + 1).round().astype(np.int64)


def group_ranks(sizes, mean_freq, width, budget, alpha=0.5):
    """Ranks r_g >= 1 (at most min(n_g, width)) proportional to mean_freq ** alpha, scaled so that
    sum_g r_g (n_g + width) is as large as the budget allows. Raises if even rank 1 everywhere
    exceeds the budget."""
    sizes, mean_freq = np.asarray(sizes, np.int64), np.asarray(mean_freq, np.float64)
    cost = sizes + width                                        # parameters per unit of rank
    if cost.sum() > budget:
        raise ValueError(f"the budget of {budget:,} parameters is below rank 1 in each of the {len(sizes)} "
                         f"groups ({int(cost.sum()):,}): use fewer groups or less compression")
    weight = mean_freq ** alpha
    cap = np.minimum(sizes, width)
    ranks = lambda s: np.clip(np.floor(s * weight), 1, cap).astype(np.int64)  # noqa: E731
    lo, hi = 0.0, float(cap.max() / weight.min())
    for _ in range(100):                                        # the largest scale within budget
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ranks(mid) @ cost <= budget else (lo, mid)
    r = ranks(lo)
    for g in np.argsort(-weight):                               # spend what flooring left over
        while r[g] < cap[g] and r @ cost + cost[g] <= budget:
            r[g] += 1
    return r


def _weighted_svd(rows, f, rank):
    """(U, V): the best rank-`rank` approximation of `rows` (n_g, H) in the norm sum_w f_w ||.||^2,
    its factors balanced (U^T U = V V^T) like an ordinary truncated SVD's.

    Undoing the weighting alone, U = U_w / sqrt(f), would leave U about f ** -1/4 times too large
    and V as much too small (a factor of 30 for words seen once in a million): the product is the
    same, but SGD on such factors steps V a thousand times too far and U a thousand times too
    little, and the gradient-norm clip, dominated by V, shrinks every other parameter's step."""
    w = np.sqrt(f)[:, None]
    best = truncated_svd(w * rows, rank)                        # of the weighted rows, then unweighted
    q, r = np.linalg.qr(best.params["U"] / w)                   # (n_g, rank), (rank, rank)
    u, s, vt = np.linalg.svd(r @ best.params["V"], full_matrices=False)
    root = np.sqrt(s)
    return (q @ u) * root, vt * root[:, None]


def _residuals(E, f, basis):
    """Weighted squared error of each row of E projected on the row space of `basis` (r, H)."""
    q, _ = np.linalg.qr(basis.T)                                # (H, r) orthonormal
    return f * np.sum((E - (E @ q) @ q.T) ** 2, axis=1)


def _refine(E, f, order, starts, ranks):
    """One pass of swaps between neighbouring groups (see the module docstring); returns the new
    order and the number of words moved."""
    order = order.copy()
    moved = 0
    for g in range(len(ranks) - 1):
        a, b = order[starts[g]:starts[g + 1]], order[starts[g + 1]:starts[g + 2]]
        Va = _weighted_svd(E[a], f[a], ranks[g])[1]
        Vb = _weighted_svd(E[b], f[b], ranks[g + 1])[1]
        gain_a = _residuals(E[a], f[a], Va) - _residuals(E[a], f[a], Vb)   # > 0: a's word prefers b
        gain_b = _residuals(E[b], f[b], Vb) - _residuals(E[b], f[b], Va)
        ia, ib = np.argsort(-gain_a), np.argsort(-gain_b)
        k = 0
        while k < min(len(a), len(b)) and gain_a[ia[k]] + gain_b[ib[k]] > 0:
            k += 1
        if k:
            wa, wb = a[ia[:k]].copy(), b[ib[:k]].copy()
            a[ia[:k]], b[ib[:k]] = wb, wa                        # views into `order`
            moved += 2 * k
    return order, moved


def group_reduce(E, freq, compression, n_groups=10, alpha=0.5, refine=1):
    """GroupReduce of the (V, H) matrix E with word frequencies `freq` (V,) at `compression` x
    fewer parameters (the order array not counted; `GroupLowRank.n_bytes` counts it): a
    `GroupLowRank` in E's dtype. `refine` passes of neighbour swaps follow the first grouping."""
    E = _matrix(E)
    freq = np.asarray(freq, np.float64)
    if freq.shape != (E.shape[0],) or not np.all(freq > 0):
        raise ValueError(f"freq must hold a positive frequency for each of the {E.shape[0]} rows of E, got "
                         f"shape {freq.shape}" + ("" if freq.shape != (E.shape[0],) else " with zeros"))
    if int(refine) < 0:
        raise ValueError(f"refine must be a number of passes >= 0, got {refine!r}")
    E64, H = E.astype(np.float64), E.shape[1]
    order, starts = frequency_groups(freq, n_groups)
    sizes = np.diff(starts)
    mean_freq = [freq[order[s:e]].mean() for s, e in zip(starts[:-1], starts[1:])]
    ranks = group_ranks(sizes, mean_freq, H, budget_params(E.shape, compression), alpha)
    for _ in range(int(refine)):
        order, moved = _refine(E64, freq, order, starts, ranks)
        if not moved:
            break
    U, Vs = [], []
    for g, r in enumerate(ranks):
        words = order[starts[g]:starts[g + 1]]
        u, v = _weighted_svd(E64[words], freq[words], r)
        U.append(u.astype(E.dtype))
        Vs.append(v.astype(E.dtype))
    return GroupLowRank(order, U, Vs)


def svd_at_budget(E, compression):
    """The baseline: one truncated SVD of the whole matrix, at the largest rank within the budget."""
    E = _matrix(E)
    rank = budget_params(E.shape, compression) // sum(E.shape)
    if rank < 1:
        raise ValueError(f"compression {compression} leaves less than rank 1 for a {E.shape} matrix")
    return truncated_svd(E, rank)


def prune_at_budget(E, compression):
    """The baseline: magnitude pruning keeping budget_params(E.shape, compression) entries."""
    E = _matrix(E)
    W = Pruned(E.copy())
    W.set_sparsity(1.0 - budget_params(E.shape, compression) / E.size)
    return W


def weighted_error(E, approx, freq):
    """Frequency-weighted relative reconstruction error sqrt(sum_w f_w ||e_w - a_w||^2 / sum_w f_w ||e_w||^2)."""
    E = _matrix(E).astype(np.float64)
    A = np.asarray(approx.to_dense() if hasattr(approx, "to_dense") else approx, np.float64)
    f = np.asarray(freq, np.float64)[:, None]
    return float(np.sqrt(np.sum(f * (E - A) ** 2) / np.sum(f * E ** 2)))


def vocab_from_dense(config, E, freq):
    """The embedding or softmax matrix of `config` (its `vocab_structure`, `vocab_compression`,
    `vocab_groups`) from the trained (V, H) matrix E and the training split's word frequencies."""
    kind = config.vocab_structure
    if kind == "dense":
        return Dense(np.array(E))
    if kind == "groupreduce":
        return group_reduce(E, freq, config.vocab_compression, n_groups=config.vocab_groups)
    if kind == "svd":
        return svd_at_budget(E, config.vocab_compression)
    if kind == "prune":
        return prune_at_budget(E, config.vocab_compression)
    if kind == "kp":                                   # KroneckerBERT's A kron one-row B, nearest to E
        return nearest_kronecker(E, shapes.vocab_kron_factors(E.shape, config.vocab_compression))
    raise ValueError(f"vocab_structure must be dense, groupreduce, svd, prune or kp, got {kind!r}")


# --- the three at one budget, as numbers (notebook 09's explorer) -------------------------------
@dataclass(frozen=True)
class BudgetState:
    """GroupReduce, one SVD and magnitude pruning of one (V, H) matrix at one budget. When the
    setting is impossible, `error` says why and the numbers are None."""
    n_groups: int
    compression: float
    error: str | None = None
    dense: int | None = None               # V * H: the matrix's parameters stored dense
    budget: int | None = None              # parameters allowed: V * H // compression
    ranks: tuple | None = None             # GroupReduce's rank per group, frequent group first
    sizes: tuple | None = None             # words per group
    mean_freq: tuple | None = None         # mean relative frequency per group
    n_params: dict | None = None           # {"groupreduce", "svd", "prune"}: parameters kept
    weighted_error: dict | None = None     # the same keys: frequency-weighted relative error

    @property
    def valid(self):
        return self.error is None


def budget_state(E, freq, n_groups, compression, refine=1):
    """A BudgetState for the (V, H) matrix E and word frequencies `freq`; never raises on a bad
    setting (too many groups for the budget, compression <= 1): it says what is wrong instead."""
    E = _matrix(E)
    try:
        n_groups, compression = int(n_groups), float(compression)
    except (TypeError, ValueError):
        return BudgetState(0, 0.0, error=f"n_groups and compression must be numbers, got {n_groups!r} and "
                                         f"{compression!r}")
    try:
        gr = group_reduce(E, freq, compression, n_groups=n_groups, refine=refine)
        svd, prune = svd_at_budget(E, compression), prune_at_budget(E, compression)
    except ValueError as e:
        return BudgetState(n_groups, compression, error=str(e))
    fr = np.asarray(freq, np.float64)
    methods = {"groupreduce": gr, "svd": svd, "prune": prune}
    return BudgetState(
        n_groups, compression, dense=E.size, budget=budget_params(E.shape, compression), ranks=tuple(gr.ranks),
        sizes=tuple(int(s) for s in gr.sizes),
        mean_freq=tuple(float(fr[gr.order[a:b]].mean()) for a, b in zip(gr.starts[:-1], gr.starts[1:])),
        n_params={k: int(m.n_params) for k, m in methods.items()},
        weighted_error={k: weighted_error(E, m, fr) for k, m in methods.items()})
