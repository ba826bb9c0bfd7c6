"""Figures of inference speed (notebook 08): speed-up against the FLOP bound, and the roofline, from
the rows `benchmarks/inference.py` measures (`dkp.bench.records` reads and tabulates them)."""
from __future__ import annotations

from dkp.bench.records import CACHES, select, short_name


def _log_axes(ax, axis="both"):
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    for which in ("x", "y") if axis == "both" else (axis,):
        getattr(ax, f"set_{which}scale")("log")
        a = getattr(ax, f"{which}axis")
        a.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        a.set_minor_formatter(NullFormatter())


def _annotate(ax, points, size=7):
    """Label (x, y, text[, color]) points on their right; call after the axes' scales and limits are set. A
    label that would overlap one placed before moves down in steps (with a leader line)."""
    to_pt = 72 / ax.figure.dpi
    placed = []
    for x, y, text, *color in sorted(points, key=lambda p: -p[1]):
        px, py = (v * to_pt for v in ax.transData.transform((x, y)))
        w, dy = 0.6 * size * len(text), 2.0
        while any(px + 4 < x1 and x0 < px + 4 + w and py + dy < y1 and y0 < py + dy + size
                  for x0, y0, x1, y1 in placed):
            dy -= size + 1
        placed.append((px + 4, py + dy, px + 4 + w, py + dy + size))
        ax.annotate(text, (x, y), xytext=(4, dy), textcoords="offset points", fontsize=size,
                    color=color[0] if color else "black",
                    arrowprops=dict(arrowstyle="-", lw=0.5, color="0.5") if dy < -size else None)


def plot_speedup_vs_bound(rows, caches=CACHES, targets=(6.0, 10.0), title=None):
    """Speed-up over dense's fastest path against the FLOP bound, batch 1, one panel per cache mode; the
    y = x line is where a method runs exactly as much faster as it has fewer multiply-adds."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(caches), figsize=(6.0 * len(caches), 4.8), layout="constrained",
                             sharey=True, squeeze=False)
    axes = axes[0]
    sel = select(rows)
    lo = min(min(r["flop_bound"], r["speedup"]) for r in sel) / 1.3
    hi = max(max(r["flop_bound"], r["speedup"]) for r in sel) * 1.3
    for ax, cache in zip(axes, caches):
        ax.plot([lo, hi], [lo, hi], color="0.5", linestyle="--", label="y = x (speed-up = FLOP bound)")
        for variant, style in (("layer", dict(marker="s", facecolors="none", edgecolors="tab:gray")),
                               ("fused", dict(marker="o", color="tab:blue"))):
            pts = [r for r in select(rows, cache=cache, variant=variant) if r["method"] != "dense"]
            label = ("fused step (dkp.core.inference.LSTMStep)" if variant == "fused"
                     else "layer step (FastLSTMLayer.forward)")
            ax.scatter([r["flop_bound"] for r in pts], [r["speedup"] for r in pts], s=36, label=label,
                       zorder=3, **style)
            if variant == "fused":
                labels = [(r["flop_bound"], r["speedup"], short_name(r["method"])) for r in pts]
        for need, style in zip(targets, (":", "-.")):
            ax.axhline(need, color="tab:red", linestyle=style, linewidth=1, label=f"target {need:g}x")
        _log_axes(ax)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        _annotate(ax, labels)
        ax.set_xlabel("FLOP bound: dense multiply-adds / method's (x, log scale)")
        ax.set_title(f"{cache} cache" + (" (weights evicted before every call)" if cache == "cold"
                                         else " (hot loop, weights stay cached)"), fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("speed-up over dense's fastest path (x, log scale)")
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title or "One LSTM step (H = 650, batch 1, float32): measured speed-up against the FLOP bound")
    return fig


def plot_roofline(rows, caches=CACHES, variant="fused", title=None):
    """Achieved GFLOP/s against arithmetic intensity (FLOP per weight byte), batch 1, one step. Per
    cache mode, two lines through dense: the diagonal GFLOP/s = (dense's achieved weight GB/s) x
    intensity (what streaming weights at dense's rate allows) and the level of dense's GFLOP/s. A
    method's speed-up over dense's same path is its FLOP bound x (its GFLOP/s / dense's), so a point
    above that level beats its FLOP bound."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.4, 5.6), layout="constrained")
    colors = {"warm": ("tab:orange", "#9c4d00"), "cold": ("tab:blue", "#174a7c")}   # (points, labels)
    xs = [r["flops_per_weight_byte"] for r in select(rows, variant=variant)]
    span = [min(xs) / 1.5, max(xs) * 1.5]
    labels = []
    for cache in caches:
        pts = select(rows, cache=cache, variant=variant)
        color, text_color = colors.get(cache, ("tab:gray", "black"))
        ax.scatter([r["flops_per_weight_byte"] for r in pts], [r["gflops"] for r in pts], color=color, zorder=3,
                   label=f"{cache} cache, {variant} step")
        labels += [(r["flops_per_weight_byte"], r["gflops"], short_name(r["method"]), text_color) for r in pts]
        dense = next(r for r in pts if r["method"] == "dense")
        bw = dense["weight_gb_per_s"]
        ax.plot(span, [bw * x for x in span], color=color, linestyle="--", linewidth=1,
                label=f"{cache}: dense's weight stream, {bw:.0f} GB/s x FLOP/B")
        ax.axhline(dense["gflops"], color=color, linestyle=":", linewidth=1,
                   label=f"{cache}: dense's {dense['gflops']:.0f} GFLOP/s (above: beats its FLOP bound)")
    _log_axes(ax)
    ax.set_xlim(*span)
    ax.set_ylim(min(r["gflops"] for r in select(rows, variant=variant)) / 1.5,
                max(r["gflops"] for r in select(rows, variant=variant)) * 4)
    _annotate(ax, labels)
    ax.set_xlabel("arithmetic intensity (FLOP per byte of weights, log scale)")
    ax.set_ylabel("achieved GFLOP/s (log scale)")
    ax.set_title(title or "Roofline view: one LSTM step, H = 650, batch 1, float32")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def plot_train_speed(record, title=None):
    """Training words/s of dkp and PyTorch for each (config, threads) of a train_speed record
    (left, medians of the rounds, labelled with the median of the rounds' ratios), and where dkp's
    step spends its time (right, stacked shares)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from dkp.bench.records import PHASE_LABELS, PHASES, paired_ratio
    rows = record["rows"]
    labels = [f"{r['config']}\n{r['threads']} thread{'s' if r['threads'] > 1 else ''}" for r in rows]
    x = np.arange(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    dkp = [r["dkp"] for r in rows]
    torch = [r["torch"] or 0.0 for r in rows]
    left.bar(x - 0.2, dkp, 0.4, label="dkp (NumPy + Numba)", color="tab:blue")
    left.bar(x + 0.2, torch, 0.4, label="PyTorch nn.LSTM", color="tab:gray")
    for i, r in enumerate(rows):
        ratio = paired_ratio(r)
        if ratio:
            left.annotate(f"{ratio[0]:.2f}x", (x[i] - 0.2, dkp[i]), xytext=(0, 3),
                          textcoords="offset points", ha="center", fontsize=8)
    left.set_xticks(x, labels)
    left.set_ylabel("training words / s")
    left.set_title("Training speed, same model, same run (label: dkp / PyTorch, median of the rounds)")
    left.legend(loc="upper right")
    bottom = np.zeros(len(rows))
    for key, label, color in zip(PHASES, PHASE_LABELS, ("tab:blue", "tab:orange", "tab:green", "tab:gray")):
        share = np.array([r["phases"][key] for r in rows])
        right.bar(x, share, 0.6, bottom=bottom, label=label, color=color)
        bottom += share
    right.set_xticks(x, labels)
    right.set_ylim(0, 1)
    right.set_ylabel("share of dkp's training step")
    right.set_title("Where dkp's step spends its time")
    right.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
