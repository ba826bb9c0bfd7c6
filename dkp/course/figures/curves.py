"""Figures of training and of the method comparisons: perplexity curves of one run or of an
experiment's arms, the density of S along the anneal, storage, and relative losses. They read metrics
and results dicts and never train anything. Every figure gets a title, axis labels with units and,
when it holds more than one line, a legend."""
from __future__ import annotations

from dkp.core.weights.sparse import csr_nbytes
from dkp.course.figures.axes import new_axes

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


# --- experiments (from the JSON that `python -m dkp experiment` writes) ----------------------------


def plot_arms(result, ax=None, key="final_valid_ppl", reference=None, title=None):
    """Final perplexity of each arm: mean over seeds with error bars of one standard deviation,
    each seed as a dot. `reference`: an arm name drawn as a dashed line across the plot."""
    import numpy as np
    ax = new_axes(ax)
    names = [a for a, e in result["arms"].items() if e.get("runs")]
    for i, arm in enumerate(names):
        vals = np.array([r[key] for r in result["arms"][arm]["runs"]])
        ax.bar(i, vals.mean(), yerr=vals.std(ddof=1) if len(vals) > 1 else 0, capsize=4, color=f"C{i}", alpha=0.7)
        ax.plot(np.full(len(vals), i), vals, "k.", label="one seed" if i == 0 else None)
    if reference in result["arms"] and result["arms"][reference].get("summary"):
        ax.axhline(result["arms"][reference]["summary"][key]["mean"], color="0.3", linestyle="--",
                   label=f"{reference} (mean)")
    ax.set_xticks(range(len(names)))
    labels = [f"{a}\n{result['arms'][a].get('compression', 1):.1f}x" for a in names]
    ax.set_xticklabels(labels, rotation=0, fontsize=8)
    lo = min(min(r[key] for r in result["arms"][a]["runs"]) for a in names)
    hi = max(max(r[key] for r in result["arms"][a]["runs"]) for a in names)
    ax.set_ylim(lo - 0.15 * (hi - lo) - 1, hi + 0.15 * (hi - lo) + 1)
    ax.set_xlabel("arm (LSTM-layer compression below the name)")
    ax.set_ylabel(("validation" if "valid" in key else "test") + " perplexity (per word)")
    ax.set_title(title or f"{result['experiment']}: final perplexity, mean ± 1 sd over seeds")
    ax.legend(fontsize=8)
    return ax


def plot_arm_curves(result, ax=None, key="valid_ppl", title=None, arms=None, shift=None, labels=None):
    """Per-epoch validation perplexity of each arm (or of `arms`): mean over seeds, shaded min-max
    band. shift: {arm: epochs} moved along x; labels: {arm: legend text}."""
    import numpy as np
    ax = new_axes(ax)
    for i, (arm, entry) in enumerate(result["arms"].items()):
        runs = entry.get("runs") or []
        if not runs or (arms is not None and arm not in arms):
            continue
        curves = np.array([r[key] for r in runs])
        x = np.arange(1, curves.shape[1] + 1) + (shift or {}).get(arm, 0.0)
        ax.plot(x, curves.mean(0), marker="o", color=f"C{i}", label=(labels or {}).get(arm, arm))
        ax.fill_between(x, curves.min(0), curves.max(0), color=f"C{i}", alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("epoch (passes over the training tokens)")
    ax.set_ylabel("validation perplexity (per word, log scale)")
    ax.set_title(title or f"{result['experiment']}: learning curves (mean, min-max over seeds)")
    ax.legend(fontsize=8)
    return ax


# --- Kronecker products (notebook 02 and dkp.course.widgets.KroneckerExplorer) -----------------------


# --- doping and the method comparison (notebooks 04 and 07) -----------------------------------

def plot_density(curves, ax=None, title=None, xlabel="training step (one BPTT window each)", target=None,
                 window=None, styles=None):
    """Density of S (fraction of its m*n entries stored) against training time, log scale.

    curves: {label: (x, density)}; styles: {label: plot keywords} (default lines); target: the final
    density, drawn as a dotted line; window: (start, end) of the anneal in x units, shaded.
    Returns the Axes."""
    ax = new_axes(ax)
    for i, (label, (x, y)) in enumerate(curves.items()):
        ax.plot(x, y, label=label, **{"color": f"C{i}", **(styles or {}).get(label, {})})
    if target is not None:
        ax.axhline(target, color="0.3", linestyle=":", label=f"target density {target:g}")
    if window is not None:
        ax.axvspan(*window, color="0.85", alpha=0.5, zorder=0, label="anneal window")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density of S (fraction of entries stored, log scale)")
    ax.set_title(title or "Annealing the density of S")
    handles = ax.get_legend_handles_labels()[0]
    if len(handles) > 1:
        ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_storage(shape, densities, itemsize=4, structured_bytes=None, ax=None, title=None):
    """Bytes of an (m, n) matrix S stored dense and in CSR form (values, int32 column indices, int32
    row pointers, as dkp.core.weights.sparse.csr_nbytes counts them) against its density, log-log;
    `structured_bytes` ({label: bytes}) drawn as horizontal lines. Returns the Axes."""
    import numpy as np

    m, n = shape
    d = np.asarray(densities, float)
    ax = new_axes(ax)
    csr = [csr_nbytes(int(round(x * m * n)), m, itemsize) for x in d]
    ax.plot(d, csr, marker=".", label="S in CSR (values + column indices + row pointers)")
    ax.plot(d, np.full(len(d), m * n * itemsize), linestyle="--", label="S stored dense")
    for i, (label, b) in enumerate((structured_bytes or {}).items()):
        ax.axhline(b, color=f"C{i + 2}", linestyle=":", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("density of S (fraction of entries stored, log scale)")
    ax.set_ylabel(f"bytes ({itemsize}-byte values, log scale)")
    ax.set_title(title or f"Storage of a {m} x {n} sparse overlay S")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_relative_loss(series, methods=None, ax=None, title=None):
    """Perplexity loss against dense, in percent, one group of bars per method and one bar per series
    (e.g. a paper's numbers and a measurement). series: {label: {method: percent or None}}; a
    missing or None value is marked "n/a" instead of a bar. Returns the Axes."""
    import numpy as np
    ax = new_axes(ax, figsize=(7.6, 4.2))
    methods = list(methods or dict.fromkeys(m for s in series.values() for m in s))
    width = 0.8 / max(len(series), 1)
    for j, (label, values) in enumerate(series.items()):
        x = np.arange(len(methods)) + (j - (len(series) - 1) / 2) * width
        for xi, method in zip(x, methods):
            v = values.get(method)
            if v is None:
                ax.annotate("n/a", (xi, 0), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                            fontsize=7, color=f"C{j}")
            else:
                ax.bar(xi, v, width, color=f"C{j}")
                ax.text(xi, v, f"{v:+.1f}%", ha="center", va="bottom" if v >= 0 else "top", fontsize=7)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods, fontsize=8)
    ax.set_xlabel("method")
    ax.set_ylabel("perplexity loss against dense (%)")
    ax.set_title(title or "Perplexity lost by each method, against the dense model")
    if len(series) > 1:
        from matplotlib.patches import Patch
        ax.legend(handles=[Patch(color=f"C{j}", label=label) for j, label in enumerate(series)], fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return ax
