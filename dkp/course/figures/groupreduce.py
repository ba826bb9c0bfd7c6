"""Figures of GroupReduce (notebook 09 and its explorer): the word frequencies of a corpus against
their rank, and one budget's groups, ranks and errors."""
from __future__ import annotations

METHOD_LABELS = {"groupreduce": "GroupReduce", "svd": "one truncated SVD", "prune": "magnitude pruning"}


def plot_zipf(counts, fit=None, ax=None, title="Word frequencies against their rank"):
    """counts: each word's count in the training split; fit: (slope, intercept) of log10 count
    against log10 rank, drawn as a dashed line."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    c = np.sort(np.asarray(counts))[::-1]
    rank = np.arange(1, len(c) + 1)
    ax.loglog(rank, c, lw=1.5, label="PTB training split")
    if fit is not None:
        slope, intercept = fit
        ax.loglog(rank, 10 ** (intercept + slope * np.log10(rank)), "--", color="0.3",
                  label=f"fit: count ∝ rank^{slope:.2f}")
    ax.set_xlabel("rank of the word (1 = most frequent)")
    ax.set_ylabel("count in the training split")
    ax.set_title(title, fontsize=10)
    ax.legend()
    return ax


def plot_budget(state, what="matrix"):
    """Two panels for a `dkp.compression.groupreduce.BudgetState`: GroupReduce's rank per group
    beside the group's mean frequency, and the three methods' weighted errors. Returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    g = np.arange(1, len(state.ranks) + 1)
    left.bar(g, state.ranks, color="C0")
    left.set_xlabel("group (1 = the most frequent words)")
    left.set_ylabel("rank given to the group", color="C0")
    left.set_title(f"{what}: {state.n_groups} groups at {state.compression:g}x", fontsize=10)
    twin = left.twinx()
    twin.semilogy(g, state.mean_freq, "o-", color="C3")
    twin.set_ylabel("mean relative frequency in the group", color="C3")
    names = list(state.weighted_error)
    right.bar([METHOD_LABELS[k] for k in names], [state.weighted_error[k] for k in names], color=["C0", "C1", "C2"])
    right.set_xlabel("method, at the same parameter budget")
    right.set_ylabel("frequency-weighted relative error")
    right.set_title(f"{what}: reconstruction error at {state.budget:,} parameters", fontsize=10)
    return fig
