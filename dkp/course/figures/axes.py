"""What every figure of the course shares: a new or given Axes."""
from __future__ import annotations


def new_axes(ax, figsize=(6.4, 4.0)):
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax
