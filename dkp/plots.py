"""Figures from results: small, generic helpers that read metrics dicts (as written to metrics.json)
and never train anything. Every figure gets a title, axis labels with units and, when it holds more
than one line, a legend."""
from __future__ import annotations

CURVES = (("train_ppl", "train (running, during the epoch)"), ("valid_ppl", "validation (end of epoch)"))


def plot_training_curves(metrics, ax=None, curves=CURVES, hlines=None, title=None, log=True):
    """Perplexity per epoch from a metrics dict.

    metrics: {"train_ppl": [...], "valid_ppl": [...], ...}, one value per epoch;
    curves: (key, label) pairs to draw (missing keys are skipped);
    hlines: {label: value} drawn as dashed horizontal reference lines (e.g. the unigram perplexity).
    Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    n = 0
    for key, label in curves:
        values = metrics.get(key) or []
        if len(values):
            ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
            n += 1
    for (label, value), style in zip((hlines or {}).items(), ("--", ":", "-.")):
        ax.axhline(value, color="0.4", linestyle=style, label=label)
        n += 1
    if log:  # plain numbers at 1, 2, 3, 5 x 10^k rather than powers of ten
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (passes over the training tokens)")
    ax.set_ylabel("perplexity (per word" + (", log scale)" if log else ")"))
    ax.set_title(title or "Training curve")
    if n > 1:
        ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return ax
