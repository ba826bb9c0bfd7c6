"""Inference-speed tables and figures (notebook 08) from the rows `benchmarks/inference.py` measures
and writes with --json. Plain Python (no pandas); every figure has a title, axis labels with units
and, with more than one series, a legend.

A row (see the benchmark's docstring): {"method", "variant" ("layer" | "fused"), "batch", "steps",
"cache" ("warm" | "cold"), "seconds", "speedup" (over the dense layer path, same batch, cache and
run), "flop_bound", "macs_per_row", "weight_bytes", "flops_per_weight_byte", "gflops",
"compression", ...}; rows with "floor": True time a tiny H = 4 layer (call overhead only).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

CACHES = ("warm", "cold")
# A compression "meets" a target c when it is >= c * (1 - RTOL), the rounding dkp.shapes.kron_shape
# lets through (520x260 kron 5x5 is 24.995x, "25x"; with 1% doping it is 19.997x, "20x").
RTOL = 1e-3
# The project's targets at batch 1, one step: (label, required speed-up, method picker)
TARGETS = (
    ("doped KP (>= 20x overall, 1% doping) >= 6x faster than dense", 6.0,
     lambda r: (r["method"].startswith("doped") and r["method"].endswith("+1.0%")
                and r["compression"] >= 20 * (1 - RTOL))),
    ("plain KP at 25x >= 10x faster than dense", 10.0,
     lambda r: r["method"].startswith("kp ") and r["compression"] >= 25 * (1 - RTOL)),
)


def benchmark_module(repo):
    """benchmarks/inference.py of the repository at `repo`, imported as a module (not run)."""
    path = Path(repo) / "benchmarks" / "inference.py"
    spec = importlib.util.spec_from_file_location("dkp_benchmark_inference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_results(path):
    """The JSON record `benchmarks/inference.py --json PATH` wrote (checked for its main fields)."""
    with open(path) as f:
        record = json.load(f)
    missing = {"command", "machine", "rows"} - set(record)
    if missing:
        raise ValueError(f"{path} is not an inference benchmark record: no {sorted(missing)}")
    return record


def select(rows, batch=1, steps=1, cache=None, variant=None, floor=False):
    """The rows of one batch and step count, optionally one cache mode and one code path."""
    return [r for r in rows if r["batch"] == batch and r["steps"] == steps and bool(r.get("floor")) == floor
            and (cache is None or r["cache"] == cache) and (variant is None or r["variant"] == variant)]


def short_name(method):
    """A label for plots: 'doped 200x650 (x) 13x2 [flops] +1.0%' -> 'dKP flops +1.0%',
    'kp 520x260 (x) 5x5 [rank]' -> 'KP rank', 'lmf r=34' -> 'LMF', 'pruned (csr)' -> 'pruned'."""
    if method.startswith(("kp ", "doped ")):
        split = method[method.index("[") + 1:method.index("]")]
        doping = method[method.index("]") + 1:]
        return ("dKP " if method.startswith("doped") else "KP ") + split + doping
    first = method.split(" ")[0]
    return first if first in ("dense", "pruned") else first.upper()


def parse_size(text):
    """A cache size as the kernel reports it ('1024K', '32M', '512') -> bytes."""
    text = str(text).strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def fmt_bytes(b):
    return f"{b / 2**20:.2f} MiB" if b >= 2**20 else f"{b / 2**10:.0f} KiB"


def text_table(header, lines, align=None):
    """Columns padded to their widest entry; `align` a string of '<' / '>' per column."""
    cells = [list(map(str, header))] + [[str(c) for c in line] for line in lines]
    widths = [max(len(row[j]) for row in cells) for j in range(len(header))]
    align = align or "<" + ">" * (len(header) - 1)
    out = ["  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths)) for row in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def structure_table(rows):
    """What each method stores and computes per input row (the same in every cache mode)."""
    lines, seen = [], set()
    for r in select(rows, cache=rows[0]["cache"] if rows else None, variant="layer"):
        if r["method"] in seen:
            continue
        seen.add(r["method"])
        lines.append((r["method"], f"{r['n_params']:,}", f"{r['compression']:.1f}x", fmt_bytes(r["weight_bytes"]),
                      f"{r['macs_per_row']:,}", f"{r['flops_per_weight_byte']:.2f}", f"{r['flop_bound']:.2f}x"))
    return text_table(("method", "params", "comp.", "weights", "MAC/row", "FLOP/B", "FLOP bound"), lines)


def speed_table(rows, caches=CACHES):
    """Batch 1, one step: per cache mode, the fused step's time and both paths' speed-up over dense."""
    header, lines = ["method", "FLOP bound"], []
    for cache in caches:
        header += [f"{cache}: fused", "x dense (layer)", "x dense (fused)"]
    for name in dict.fromkeys(r["method"] for r in select(rows)):
        line = [short_name(name), None]
        for cache in caches:
            sel = {r["variant"]: r for r in select(rows, cache=cache) if r["method"] == name}
            dense_fused = next(r for r in select(rows, cache=cache, variant="fused") if r["method"] == "dense")
            fused = sel["fused"]
            line[1] = f"{fused['flop_bound']:.2f}x"
            line += [f"{fused['seconds'] * 1e6:.1f} us", f"{fused['speedup']:.2f}x",
                     f"{dense_fused['seconds'] / fused['seconds']:.2f}x"]
        lines.append(line)
    return text_table(header, lines)


def target_results(rows):
    """[(label, need, [result])]: each result {"method", "cache", "compression", "flop_bound", "x_layer",
    "x_fused", "met_layer", "met_fused"} for the fused step, against the dense layer path ("x_layer",
    the benchmark's own baseline) and against dense's fused path (BLAS gemv + Numba cell, stricter)."""
    out = []
    for label, need, pick in TARGETS:
        results = []
        for cache in dict.fromkeys(r["cache"] for r in select(rows)):
            dense_fused = next(r for r in select(rows, cache=cache, variant="fused") if r["method"] == "dense")
            for r in select(rows, cache=cache, variant="fused"):
                if pick(r):
                    x_fused = dense_fused["seconds"] / r["seconds"]
                    results.append({"method": r["method"], "cache": cache, "compression": r["compression"],
                                    "flop_bound": r["flop_bound"], "x_layer": r["speedup"], "x_fused": x_fused,
                                    "met_layer": r["speedup"] >= need, "met_fused": x_fused >= need})
        out.append((label, need, results))
    return out


def target_summary(results, key="met_layer"):
    """One plain sentence per target from `target_results`' results: per cache mode, who meets it."""
    parts = []
    for cache in dict.fromkeys(r["cache"] for r in results):
        met = [short_name(r["method"]) for r in results if r["cache"] == cache and r[key]]
        parts.append(f"{cache} cache: " + (f"met by {', '.join(met)}" if met else "not met"))
    return "; ".join(parts)


# --- figures ----------------------------------------------------------------------------------

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
    """Speed-up over the dense layer against the FLOP bound, batch 1, one panel per cache mode; the
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
            label = ("fused step (dkp.inference.LSTMStep)" if variant == "fused"
                     else "layer step (LSTMLayer.forward)")
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
    axes[0].set_ylabel("speed-up over the dense layer step (x, log scale)")
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
