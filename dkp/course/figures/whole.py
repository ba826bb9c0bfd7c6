"""Figures of the whole model (notebook 10): learning curves counted from a student's switch, and
perplexity against whole-model compression."""
from __future__ import annotations

from dkp.course.figures.axes import new_axes
from dkp.course.figures.curves import plot_arm_curves


def plot_from_switch(result, arms=None, ax=None, title=None):
    """Validation perplexity per epoch (mean over seeds, min-max band) of `arms` of a whole-model
    result, on an axis counted in epochs of compressed training: a student's first `dense_warmup`
    epochs (dense) fall at x <= 0, its switch at x = 0, and an arm trained compressed from scratch
    starts at x = 1 after its first epoch."""
    import numpy as np

    warm = {arm: e["config"].get("dense_warmup") or 0.0 for arm, e in result["arms"].items()}
    ax = plot_arm_curves(result, ax=ax, arms=arms, shift={a: -w for a, w in warm.items()},
                         labels={a: a + " (student)" for a, w in warm.items() if w})
    for i, (arm, entry) in enumerate(result["arms"].items()):   # the cross: right after the switch
        runs = entry.get("runs") or []
        if warm[arm] and runs and runs[0].get("switch") and (arms is None or arm in arms):
            ax.plot([0], [np.mean([r["switch"]["valid_ppl_after"] for r in runs])], marker="x", ms=9, color=f"C{i}")
    ax.axvline(0, color="0.5", ls=":", lw=1)
    ax.set_xlabel("epochs of compressed training (0: a student's switch from dense; x: right after it)")
    ax.set_title(title or f"{result['experiment']}: learning curves from the switch")
    return ax


def plot_size_accuracy(rows, ax=None, title="Whole model: perplexity against compression"):
    """rows: {arm: (compression, perplexity, int8 compression or None)}: each arm as a point at its
    float32 parameter compression, and as a hollow point at its int8 byte compression."""
    ax = new_axes(ax)
    for i, (arm, (comp, ppl, comp8)) in enumerate(rows.items()):
        ax.scatter([comp], [ppl], color=f"C{i}", label=arm, zorder=3)
        if comp8:
            ax.scatter([comp8], [ppl], facecolors="none", edgecolors=f"C{i}", zorder=3)
            ax.plot([comp, comp8], [ppl, ppl], color=f"C{i}", lw=0.8, alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("whole-model compression (filled: parameters, float32; hollow: bytes, int8)")
    ax.set_ylabel("final validation perplexity (mean over seeds)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return ax
