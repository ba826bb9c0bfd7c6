"""Figures from results: small, generic helpers that read metrics dicts (as written to metrics.json),
factor shapes and error curves, and never train anything. Every figure gets a title, axis labels with
units and, when it holds more than one line, a legend."""
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


# --- experiments (from the JSON that `python -m dkp experiment` writes) ----------------------------
def _axes(ax, figsize=(6.4, 4.0)):
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def arm_table(result):
    """Rows (arm, valid mean, valid std, test mean, test std, n seeds, LSTM compression) of a result."""
    rows = []
    for arm, entry in result["arms"].items():
        s = entry.get("summary")
        if not s:
            continue
        v, t = s["final_valid_ppl"], s["test_ppl"]
        rows.append((arm, v["mean"], v["std"], t["mean"], t["std"], v["n"], entry.get("compression")))
    return rows


def plot_arms(result, ax=None, key="final_valid_ppl", reference=None, title=None):
    """Final perplexity of each arm: mean over seeds with error bars of one standard deviation,
    each seed as a dot. `reference`: an arm name drawn as a dashed line across the plot."""
    import numpy as np
    ax = _axes(ax)
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


def plot_arm_curves(result, ax=None, key="valid_ppl", title=None):
    """Per-epoch validation perplexity of each arm: mean over seeds, shaded min-max band."""
    import numpy as np
    ax = _axes(ax)
    for i, (arm, entry) in enumerate(result["arms"].items()):
        runs = entry.get("runs") or []
        if not runs:
            continue
        curves = np.array([r[key] for r in runs])
        x = np.arange(1, curves.shape[1] + 1)
        ax.plot(x, curves.mean(0), marker="o", color=f"C{i}", label=arm)
        ax.fill_between(x, curves.min(0), curves.max(0), color=f"C{i}", alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("epoch (passes over the training tokens)")
    ax.set_ylabel("validation perplexity (per word, log scale)")
    ax.set_title(title or f"{result['experiment']}: learning curves (mean, min-max over seeds)")
    ax.legend(fontsize=8)
    return ax


def cma_series(result, arm):
    """The CMA record of `arm` averaged over seeds: dict of arrays (density, ppl, ppl_s_off,
    sparse_share, cosine) over the recorded points (the same points for every seed)."""
    import numpy as np
    runs = [r for r in result["arms"][arm]["runs"] if r.get("cma")]
    if not runs:
        raise ValueError(f"arm {arm!r} has no CMA record (run the 'cma' or 'cmr' experiment)")
    out = {}
    for key in ("density", "ppl", "ppl_s_off"):
        out[key] = np.array([[p[key] for p in r["cma"]] for r in runs], float).mean(0)
    for key in ("sparse_share", "cosine", "norm_structured", "norm_sparse"):
        out[key] = np.array([[np.mean([l[key] for l in p["layers"]]) for p in r["cma"]] for r in runs]).mean(0)
    return out


def plot_cma(result, arms=None, ax=None, title=None):
    """Perplexity with S and with S switched off along the anneal (x: density of S, log scale,
    falling to the right), one pair of lines per arm."""
    ax = _axes(ax)
    for i, arm in enumerate(arms or [a for a, e in result["arms"].items() if any(r.get("cma") for r in e["runs"])]):
        s = cma_series(result, arm)
        ax.plot(s["density"], s["ppl"], marker="o", color=f"C{i}", label=f"{arm}: with S")
        ax.plot(s["density"], s["ppl_s_off"], marker="x", linestyle="--", color=f"C{i}", label=f"{arm}: S switched off")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_yscale("log")
    ax.set_xlabel("density of S (fraction of entries kept, log scale; training runs left to right)")
    ax.set_ylabel("validation perplexity (per word, log scale)")
    ax.set_title(title or "Co-matrix adaptation along the anneal")
    ax.legend(fontsize=8)
    return ax


def plot_branch_share(result, arms=None, ax=None, title=None):
    """Share of the gate pre-activation's energy carried by S, ||Sx||^2 / (||KPx||^2 + ||Sx||^2),
    along the anneal."""
    ax = _axes(ax)
    for i, arm in enumerate(arms or [a for a, e in result["arms"].items() if any(r.get("cma") for r in e["runs"])]):
        s = cma_series(result, arm)
        ax.plot(s["density"], s["sparse_share"], marker="o", color=f"C{i}", label=arm)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("density of S (fraction of entries kept, log scale)")
    ax.set_ylabel("share of ||W x||² carried by S (fraction)")
    ax.set_title(title or "How much the gates depend on S")
    ax.legend(fontsize=8)
    return ax


# --- Kronecker products (notebook 02 and dkp.widgets.KroneckerExplorer) -----------------------

def _heatmap(ax, M, title, vmax=None):
    """One matrix as a heatmap on a symmetric colour scale (blue negative, red positive)."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    M = np.asarray(M, dtype=float)
    vmax = vmax or float(np.abs(M).max()) or 1.0
    im = ax.imshow(M, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest", aspect="equal")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("column index")
    ax.set_ylabel("row index")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    ax.figure.colorbar(im, ax=ax, shrink=0.7, label="entry value (no unit)")
    return im


def _side_text(name, block, shape):
    """'A (3 x 2)' or, for a displayed block of a larger matrix, 'A (520 x 260): top-left 48 x 48'."""
    text = f"{name} ({shape[0]} x {shape[1]})"
    if tuple(block) != tuple(shape):
        text += f":\ntop-left {block[0]} x {block[1]}"
    return text


def plot_kron_heatmaps(A, B, W=None, shapes=None, fig=None, max_lines=40):
    """Heatmaps of A, B and W = A kron B side by side, W with the block grid drawn (one block per
    entry of A, each a scaled copy of B).

    A, B: 2-D arrays (the factors, or top-left blocks of them); W: what to draw for A kron B
    (default np.kron(A, B); pass a top-left block for large matrices); shapes: the full shapes
    ((m1, n1), (m2, n2)) when A, B are blocks (default their own shapes). Block lines are drawn when
    at most `max_lines` fit. Returns the Figure (close it after showing it)."""
    import matplotlib.pyplot as plt
    import numpy as np

    A, B = np.asarray(A), np.asarray(B)
    W = np.kron(A, B) if W is None else np.asarray(W)
    (m1, n1), (m2, n2) = shapes if shapes is not None else (A.shape, B.shape)
    if fig is None:
        fig = plt.figure(figsize=(11.0, 3.8), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=[1, 1, 1.6])
    _heatmap(axes[0], A, _side_text("A", A.shape, (m1, n1)))
    _heatmap(axes[1], B, _side_text("B", B.shape, (m2, n2)))
    _heatmap(axes[2], W, _side_text("A ⊗ B", W.shape, (m1 * m2, n1 * n2)))
    rows, cols = W.shape
    if rows / m2 <= max_lines and cols / n2 <= max_lines:
        for r in np.arange(m2, rows, m2):
            axes[2].axhline(r - 0.5, color="k", linewidth=0.6)
        for c in np.arange(n2, cols, n2):
            axes[2].axvline(c - 0.5, color="k", linewidth=0.6)
    fig.suptitle(f"W = A ⊗ B: block (i, j) of W is A[i, j] · B  "
                 f"({m1 * m2} x {n1 * n2} from {m1 * n1 + m2 * n2:,} stored numbers)", fontsize=11)
    return fig


def plot_kron_tradeoff(candidates, shape, picks=None, target=None, ax=None):
    """Compression against the speed bound (dense / Kronecker multiply-adds per input row) for every
    candidate factor shape (dkp.shapes.KronShape), coloured by the largest rank the product can reach
    (as a fraction of min(m, n)). picks: {label: KronShape} marked on top; target: a compression
    drawn as a vertical line. Returns the Axes."""
    import matplotlib.pyplot as plt
    import numpy as np

    m, n = shape
    if ax is None:
        _, ax = plt.subplots(figsize=(7.6, 4.8), layout="constrained")
    comp = np.array([c.compression for c in candidates])
    speed = np.array([m * n / c.flops for c in candidates])
    frac = np.array([c.max_rank / min(m, n) for c in candidates])
    sc = ax.scatter(comp, speed, c=frac, cmap="viridis", vmin=0, vmax=1, s=18, alpha=0.8,
                    label=f"every split of {m} x {n} (A m1 x n1, B m2 x n2)")
    ax.figure.colorbar(sc, ax=ax, label="max rank of A ⊗ B / min(m, n)")
    lim = [min(comp.min(), speed.min()), max(comp.max(), speed.max())]
    ax.plot(lim, lim, color="0.5", linestyle=":", label="speed bound = compression")
    for (label, c), marker in zip((picks or {}).items(), ("*", "D", "s", "^", "v")):
        ax.scatter([c.compression], [m * n / c.flops], marker=marker, s=160, facecolor="none",
                   edgecolor="C3", linewidths=1.8, label=f"{label}: A {c.m1}x{c.n1} ⊗ B {c.m2}x{c.n2}")
    if target is not None:
        ax.axvline(target, color="C1", linestyle="--", label=f"target {target:g}x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compression (dense parameters / stored parameters, x)")
    ax.set_ylabel("speed bound (dense / Kronecker multiply-adds per row, x)")
    ax.set_title(f"Factor shapes of a {m} x {n} matrix: storage vs arithmetic")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_nearest_kronecker_errors(curves, axes=None, title=None):
    """Relative Frobenius error of the nearest sum of r Kronecker products, against r (left) and
    against the compression it gives (right).

    curves: {label: {"rank": [...], "error": [...], "compression": [...]}}, optionally with "style"
    (plot keywords) and "on_rank_axis": False (draw that curve on the right only).
    Returns the two Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11.0, 4.2), layout="constrained")
    left, right = axes
    for label, c in curves.items():
        style = dict(c.get("style", {}))
        if c.get("on_rank_axis", True):
            left.plot(c["rank"], c["error"], label=label, **style)
        right.plot(c["compression"], c["error"], label=label, **style)
    left.set_xlabel("rank r (number of Kronecker products summed)")
    left.set_ylabel("relative error ||W - W_r||_F / ||W||_F (no unit)")
    left.set_title("Error against rank")
    right.set_xscale("log")  # plain numbers at 1, 2, 5 x 10^k
    right.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    right.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    right.xaxis.set_minor_formatter(NullFormatter())
    right.set_xlabel("compression (dense parameters / stored parameters, x, log scale)")
    right.set_ylabel("relative error ||W - W_r||_F / ||W||_F (no unit)")
    right.set_title("Error against compression")
    for ax in axes:
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        left.figure.suptitle(title)
    return axes


# --- doping and the method comparison (notebooks 04 and 07) -----------------------------------

def plot_density(curves, ax=None, title=None, xlabel="training step (one BPTT window each)", target=None,
                 window=None, styles=None):
    """Density of S (fraction of its m*n entries stored) against training time, log scale.

    curves: {label: (x, density)}; styles: {label: plot keywords} (default lines); target: the final
    density, drawn as a dotted line; window: (start, end) of the anneal in x units, shaded.
    Returns the Axes."""
    ax = _axes(ax)
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
    row pointers, as dkp.weights.sparse.csr_nbytes counts them) against its density, log-log;
    `structured_bytes` ({label: bytes}) drawn as horizontal lines. Returns the Axes."""
    import numpy as np

    from .weights.sparse import csr_nbytes
    m, n = shape
    d = np.asarray(densities, float)
    ax = _axes(ax)
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
    ax = _axes(ax, figsize=(7.6, 4.2))
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
