"""Drawn pictures of the course's ideas, where a picture teaches more than a plot: one LSTM step (the
four gates, c and h, the data flow; notebook 01), BPTT windows over a (steps, batch) stream (01),
the blocks of a Kronecker product, A's entries scaling copies of B (02), and W = A kron B + S, a
structured part plus a sparse overlay (04). Each returns its Axes (or Figure) with a title."""
from __future__ import annotations

import numpy as np

from dkp.course.figures.axes import new_axes


def _box(ax, xy, text, width=1.0, height=0.6, color="#dde8f5", fontsize=10):
    """A rounded box centred at `xy`; returns its (x, y, width, height) for the arrows."""
    from matplotlib.patches import FancyBboxPatch
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05",
                                facecolor=color, edgecolor="0.3", linewidth=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    return x, y, width, height


def _link(ax, a, b, text=None, side="right"):
    """An arrow from box a's right edge (or bottom, side="down") to box b's left edge (or top)."""
    if side == "down":
        start, end = (a[0], a[1] - a[3] / 2 - 0.05), (b[0], b[1] + b[3] / 2 + 0.05)
    else:
        start, end = (a[0] + a[2] / 2 + 0.05, a[1]), (b[0] - b[2] / 2 - 0.05, b[1])
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="0.25", lw=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.1, (start[1] + end[1]) / 2, text, ha="left", va="center",
                fontsize=9, color="0.2")


def draw_lstm_cell(ax=None, title="One LSTM step: one product by the gate matrix W, then four gates"):
    """The data flow of one LSTM step: [x_t, h_{t-1}] times W, split into the gates i, f, g, o, the
    cell update c_t = f * c_{t-1} + i * g and the output h_t = o * tanh(c_t)."""
    ax = new_axes(ax, figsize=(12.0, 5.4))
    x_in = _box(ax, (0.6, 3.7), "$x_t$\n(B, in)", 1.0, 0.7, "#f3e6c8")
    h_in = _box(ax, (0.6, 1.5), "$h_{t-1}$\n(B, H)", 1.0, 0.7, "#f3e6c8")
    cat = _box(ax, (2.6, 2.6), "concatenate\n$[x_t, h_{t-1}]$", 1.5, 0.8)
    z = _box(ax, (5.0, 2.6), "$z = [x_t, h_{t-1}] W^T + b$\n(B, 4H)", 2.1, 0.8, "#f7d6d0")
    ax.text(5.0, 2.0, "W (4H, in + H): rows of i, f, g, o,\nH rows each", ha="center", va="top", fontsize=8,
            color="0.3")
    gates = {name: _box(ax, (7.8, y), text, 1.7, 0.7, "#e2f0d9") for name, text, y in (
        ("i", "input gate\n$i = \\sigma(z_i)$", 4.3), ("f", "forget gate\n$f = \\sigma(z_f)$", 3.3),
        ("g", "candidate\n$g = \\tanh(z_g)$", 2.0), ("o", "output gate\n$o = \\sigma(z_o)$", 0.9))}
    c_prev = _box(ax, (7.8, 5.4), "$c_{t-1}$ (B, H)", 1.5, 0.5, "#f3e6c8")
    c_new = _box(ax, (10.6, 4.3), "$c_t = f \\odot c_{t-1} + i \\odot g$", 2.3, 0.7, "#fbe5b6")
    h_new = _box(ax, (10.6, 1.5), "$h_t = o \\odot \\tanh(c_t)$", 2.1, 0.7, "#fbe5b6")
    c_out = _box(ax, (12.8, 4.3), "$c_t$\nto step t+1", 1.1, 0.7, "#f3e6c8")
    h_out = _box(ax, (12.8, 1.5), "$h_t$\nto the layer above\nand to step t+1", 1.5, 0.9, "#f3e6c8")
    _link(ax, x_in, cat)
    _link(ax, h_in, cat)
    _link(ax, cat, z)
    for g in gates.values():
        _link(ax, z, g)
    for src in (c_prev, gates["i"], gates["f"], gates["g"]):
        _link(ax, src, c_new)
    _link(ax, gates["o"], h_new)
    _link(ax, c_new, h_new, "tanh", side="down")
    _link(ax, c_new, c_out)
    _link(ax, h_new, h_out)
    ax.set_xlim(-0.2, 13.8)
    ax.set_ylim(0.2, 6.0)
    ax.set_xlabel("data flow, left to right (shapes for a batch of B rows)")
    ax.set_ylabel("one LSTM layer, one timestep")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return ax


def draw_bptt_windows(steps=12, batch=4, bptt=4, ax=None,
                      title="BPTT windows over a (steps, batch) stream: the state is carried, its gradient is not"):
    """A stream of `steps` rows and `batch` columns (each column one stretch of text), cut into windows
    of `bptt` rows; each window's targets y are its inputs x one row further on; the hidden state
    passes from one window to the next, and backpropagation stops at each window's top edge."""
    from matplotlib.patches import Rectangle
    ax = new_axes(ax, figsize=(9.0, 5.6))
    colors = ("#cfe2f3", "#fce5cd", "#d9ead3", "#ead1dc")
    for w, top in enumerate(range(0, steps - 1, bptt)):
        rows = min(bptt, steps - 1 - top)
        ax.add_patch(Rectangle((-0.5, top - 0.5), batch, rows, facecolor=colors[w % len(colors)],
                               edgecolor="0.2", linewidth=1.5))
        ax.text(batch - 0.3, top + rows / 2 - 0.5, f"window {w + 1}: x rows {top}..{top + rows - 1},\n"
                f"y rows {top + 1}..{top + rows}", va="center", fontsize=8)
        if top + rows < steps - 1:
            ax.annotate("", xy=(-0.9, top + rows + 0.3), xytext=(-0.9, top + rows - 1.2),
                        arrowprops=dict(arrowstyle="->", color="C3", lw=1.5))
            ax.text(-1.0, top + rows - 0.5, "state (h, c)\ncarried", ha="right", va="center", fontsize=8, color="C3")
    for b in range(batch):
        for t in range(steps):
            ax.text(b, t, f"$w_{{{b * steps + t}}}$", ha="center", va="center", fontsize=8)
    ax.set_xlim(-2.6, batch + 3.2)
    ax.set_ylim(steps - 0.5, -1.2)
    ax.set_xticks(range(batch))
    ax.set_yticks(range(steps))
    ax.set_xlabel("batch column b (one contiguous stretch of the text each)")
    ax.set_ylabel("step: row of the stream")
    ax.set_title(title, fontsize=10)
    return ax


def draw_kron_blocks(A, B, ax=None, title=None):
    """W = A kron B drawn as its m1 x n1 grid of blocks, block (i, j) labelled A[i, j] B and filled with
    its entries: each block a copy of B scaled by one entry of A."""
    from matplotlib.patches import Rectangle
    A, B = np.asarray(A), np.asarray(B)
    (m1, n1), (m2, n2) = A.shape, B.shape
    W = np.kron(A, B)
    ax = new_axes(ax, figsize=(1.1 * n1 * n2 + 2, 0.75 * m1 * m2 + 1.5))
    vmax = float(np.abs(W).max()) or 1.0
    ax.imshow(W, cmap="RdBu_r", vmin=-vmax, vmax=vmax, alpha=0.55, interpolation="nearest")
    for i in range(m1):
        for j in range(n1):
            ax.add_patch(Rectangle((j * n2 - 0.5, i * m2 - 0.5), n2, m2, fill=False, edgecolor="k", linewidth=2))
            ax.text(j * n2 + n2 / 2 - 0.5, i * m2 - 0.45, f"$A_{{{i}{j}}} B = {A[i, j]:g}\\,B$", ha="center",
                    va="top", fontsize=8, color="0.1", bbox=dict(facecolor="white", alpha=0.7, pad=1, lw=0))
    for (r, c), v in np.ndenumerate(W):
        ax.text(c, r + 0.15, f"{v:g}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(n1 * n2))
    ax.set_yticks(range(m1 * m2))
    ax.set_xlabel(f"column j n2 + l of W (n1 = {n1} blocks of n2 = {n2})")
    ax.set_ylabel(f"row i m2 + k of W (m1 = {m1} blocks of m2 = {m2})")
    ax.set_title(title or f"A ⊗ B: A ({m1} x {n1}) scales {m1 * n1} copies of B ({m2} x {n2})")
    return ax


def draw_doped_matrix(shape=(24, 16), factors=((6, 4), (4, 4)), density=0.04, seed=0, fig=None):
    """Three panels, W = A kron B + S: a Kronecker product (its block pattern), a sparse S keeping
    `density` of the entries (its largest, as the anneal keeps), and their sum. Returns the Figure."""
    import matplotlib.pyplot as plt
    rng = np.random.default_rng(seed)
    (m1, n1), (m2, n2) = factors
    KP = np.kron(rng.uniform(-1, 1, (m1, n1)), rng.uniform(-1, 1, (m2, n2)))
    S = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.6, 1.0, shape) * np.abs(KP).max()
    keep = np.abs(S) >= np.quantile(np.abs(S), 1 - density)
    S = np.where(keep, S, 0.0)
    if fig is None:
        fig = plt.figure(figsize=(12, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    vmax = float(np.abs(KP + S).max())
    panels = (("structured part A ⊗ B\n(a block pattern of scaled copies of B)", KP),
              (f"sparse overlay S\n({int(keep.sum())} of {S.size} entries kept, {density:.0%})", S),
              ("W = A ⊗ B + S", KP + S))
    for ax, (label, M) in zip(axes, panels):
        shown = np.where(M == 0, np.nan, M) if M is S else M
        ax.imshow(shown, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("column of W")
        ax.set_ylabel("row of W")
        ax.set_facecolor("0.95")
    for ax in (axes[0], axes[2]):                   # the blocks of A kron B: one per entry of A
        for r in range(m2, shape[0], m2):
            ax.axhline(r - 0.5, color="0.4", linewidth=0.6)
        for c in range(n2, shape[1], n2):
            ax.axvline(c - 0.5, color="0.4", linewidth=0.6)
    for ax in axes[:2]:
        ax.text(1.07, 0.5, "+" if ax is axes[0] else "=", transform=ax.transAxes, fontsize=22, ha="center",
                va="center")
    for r, c in zip(*np.nonzero(keep)):
        axes[2].add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="k", linewidth=1))
    fig.suptitle(f"Doping: W ({shape[0]} x {shape[1]}) = A ({m1} x {n1}) ⊗ B ({m2} x {n2}) + S, "
                 f"S extremely sparse (outlined on the right)")
    return fig
