"""What every figure of the course shares: a new or given Axes, and its labels, grid and legend."""
from __future__ import annotations


def new_axes(ax, figsize=(6.4, 4.0)):
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def label_axes(ax, xlabel, ylabel, title, legend=True):
    """Axis labels, title, a light grid and (when asked) a small legend; returns ax."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    return ax
