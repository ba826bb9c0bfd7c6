"""Figures of Kronecker products (notebook 02 and the Kronecker explorer): the factors and their
product as heatmaps, the size-cost trade-off of the factor shapes, the nearest-Kronecker errors."""
from __future__ import annotations


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
    candidate factor shape (dkp.compression.shapes.KronShape), coloured by the largest rank the product can reach
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
