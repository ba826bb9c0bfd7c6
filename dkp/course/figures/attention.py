"""Figures of the transformer (notebook 11): its pre-LayerNorm block drawn as a data flow, the causal
mask and the attention weights of a sentence with its words on the axes, the training loss step by
step, and a Kronecker qkv matrix with the rows of q, k and v marked on its blocks."""
from __future__ import annotations

import numpy as np

from dkp.core.attention import causal_mask
from dkp.course.figures.axes import label_axes, new_axes
from dkp.course.figures.diagrams import _box
from dkp.course.figures.kronecker import _heatmap


def _arrow(ax, start, end, color="0.25"):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color=color, lw=1.2))


def draw_transformer_block(ax=None, title="The decoder-only transformer: pre-LayerNorm blocks on a residual stream"):
    """The model bottom to top: token ids, token plus position embeddings, the residual stream with its
    two branches per block (LayerNorm then causal self-attention; LayerNorm then the GELU MLP), each
    added back, the final LayerNorm and the tied softmax. Shapes for a (T, B) window, width H."""
    from matplotlib.patches import FancyBboxPatch
    ax = new_axes(ax, figsize=(9.0, 8.2))
    stream_x, branch_x = 0.0, 3.2
    ax.add_patch(FancyBboxPatch((-1.3, 1.75), 6.7, 5.4, boxstyle="round,pad=0.05", facecolor="none",
                                edgecolor="0.5", linestyle="--", linewidth=1))
    ax.text(5.3, 2.0, "one block,\nrepeated L times", ha="right", va="bottom", fontsize=9, color="0.35")
    _box(ax, (stream_x, 0.0), "token ids x (T, B)", 2.2, 0.5, "#f3e6c8")
    _box(ax, (stream_x, 1.0), "e = E[x] + pos  (T, B, H)", 2.6, 0.5, "#e2f0d9")
    _arrow(ax, (stream_x, 0.3), (stream_x, 0.7))
    rows = ((2.45, "LayerNorm ln1", 3.45, "causal self-attention\nqkv (3H, H) · mask · softmax · proj (H, H)",
             4.35),
            (5.05, "LayerNorm ln2", 6.05, "MLP: fc (4H, H) · GELU · proj (H, 4H)", 6.85))
    top = 1.25
    for y_ln, ln_text, y_f, f_text, y_add in rows:
        ln = _box(ax, (branch_x, y_ln), ln_text, 1.8, 0.45)
        f = _box(ax, (branch_x, y_f), f_text, 3.6 if "qkv" in f_text else 3.4, 0.7, "#f7d6d0")
        ax.plot([stream_x, stream_x], [top, y_add - 0.2], color="0.25", lw=1.2)
        _arrow(ax, (stream_x, y_ln), (branch_x - ln[2] / 2 - 0.05, y_ln))
        _arrow(ax, (branch_x, y_ln + 0.25), (branch_x, y_f - 0.4))
        _arrow(ax, (branch_x - f[2] / 2 - 0.05, y_f + 0.15), (stream_x + 0.22, y_add))
        ax.text(stream_x, y_add, "+", ha="center", va="center", fontsize=14,
                bbox=dict(boxstyle="circle,pad=0.1", facecolor="white", edgecolor="0.3"))
        top = y_add + 0.2
    ax.text(stream_x - 0.2, 3.3, "residual stream\n(T, B, H)", ha="right", va="center", fontsize=9, color="0.3")
    _box(ax, (stream_x, 7.75), "LayerNorm ln_f", 1.8, 0.45)
    _arrow(ax, (stream_x, top), (stream_x, 7.5))
    _box(ax, (stream_x, 8.75), "logits = ln_f(e) Eᵀ + b  (T, B, V)\nthe tied softmax: D = E", 3.4, 0.7,
                "#fbe5b6")
    _arrow(ax, (stream_x, 8.0), (stream_x, 8.38))
    ax.set_xlim(-2.6, 5.6)
    ax.set_ylim(-0.5, 9.4)
    ax.set_xlabel("each branch reads LayerNorm(e) and adds its output back to e")
    ax.set_ylabel("data flow, bottom to top")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return ax


def _word_axes(ax, words, xlabel, ylabel):
    n = len(words)
    ax.set_xticks(range(n))
    ax.set_xticklabels(words, rotation=90, fontsize=8)
    ax.set_yticks(range(n))
    ax.set_yticklabels(words, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def plot_causal_mask(T, words=None, ax=None, title=None):
    """The causal mask of a window of T tokens: query i (a row) may read key j (a column) for j <= i,
    the rest is set to -inf before the softmax. words: the T tokens, drawn as tick labels."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    words = list(words) if words is not None else [str(t) for t in range(T)]
    ax = new_axes(ax, figsize=(5.6, 5.2))
    visible = ~causal_mask(T, T)                                       # (T, T)
    ax.imshow(visible, cmap=ListedColormap(["#d9d9d9", "#3b6ea8"]), vmin=0, vmax=1, interpolation="nearest")
    _word_axes(ax, words, "key j (the word read)", "query i (the word whose next word is predicted)")
    ax.legend(handles=[Patch(color="#3b6ea8", label=f"visible: j <= i ({int(visible.sum())} pairs)"),
                       Patch(color="#d9d9d9", label=f"masked: score set to -inf ({int((~visible).sum())})")],
              loc="upper right", fontsize=8)
    ax.set_title(title or f"The causal mask of a window of {T} tokens")
    return ax


def plot_attention(weights, words, axes=None, title=None, vmax=None):
    """Attention weights (n_head, T, T) (or one head, (T, T)) as one heatmap per head: row i is the
    distribution query i puts over keys 0..i (each row sums to 1; the masked upper triangle is 0).
    words: the T tokens, drawn as tick labels. Returns the Figure."""
    import matplotlib.pyplot as plt
    weights = np.asarray(weights, dtype=float)
    weights = weights[None] if weights.ndim == 2 else weights
    nh, T, _ = weights.shape
    if axes is None:
        _, axes = plt.subplots(1, nh, figsize=(5.4 * nh, 5.4), layout="constrained", squeeze=False)
        axes = axes[0]
    vmax = vmax or float(weights.max())
    for h, ax in enumerate(axes):
        shown = np.where(np.triu(np.ones((T, T), bool), 1), np.nan, weights[h])   # the future: blank
        im = ax.imshow(shown, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_facecolor("0.93")
        _word_axes(ax, words, "key j (the word read)", "query i")
        ax.set_title(f"head {h}", fontsize=10)
    axes[0].figure.colorbar(im, ax=list(axes), shrink=0.7, label="attention weight (each row sums to 1)")
    axes[0].figure.suptitle(title or "Attention weights")
    return axes[0].figure


def plot_step_losses(losses, hlines=None, ax=None, title=None, window=20):
    """The training loss (nats per token) of every step, with its running mean over `window` steps;
    hlines: {label: value} drawn as dashed reference lines (log V, the uniform model)."""
    losses = np.asarray(losses, dtype=float)
    ax = new_axes(ax, figsize=(7.0, 4.2))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, color="C0", alpha=0.35, linewidth=1, label="training loss of each step")
    if len(losses) >= window:
        mean = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], mean, color="C0", linewidth=2, label=f"running mean over {window} steps")
    for (label, value), style in zip((hlines or {}).items(), ("--", ":", "-.")):
        ax.axhline(value, color="0.4", linestyle=style, label=label)
    return label_axes(ax, "training step (one (T, B) window each)", "cross-entropy (nats per token)",
                      title or "Training loss, step by step")


def plot_kron_qkv(A, B, H):
    """A Kronecker qkv matrix W = A kron B, (3H, H): the factors and W as heatmaps, W with its block
    grid (block rows m2 tall) and the rows of q, k and v (H each) marked. A boundary that falls inside
    a block row means q, k and v share that row of A. Returns the Figure."""
    import matplotlib.pyplot as plt
    A, B = np.asarray(A), np.asarray(B)
    (m1, n1), (m2, n2) = A.shape, B.shape
    W = np.kron(A, B)
    fig = plt.figure(figsize=(10.0, 8.0), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.5])
    _heatmap(fig.add_subplot(grid[0, 0]), A, f"A ({m1} x {n1})")
    _heatmap(fig.add_subplot(grid[1, 0]), B, f"B ({m2} x {n2})")
    ax = fig.add_subplot(grid[:, 1])
    _heatmap(ax, W, f"W = A ⊗ B ({m1 * m2} x {n1 * n2})")
    for r in range(m2, m1 * m2, m2):
        ax.axhline(r - 0.5, color="k", linewidth=0.4)
    for c in range(n2, n1 * n2, n2):
        ax.axvline(c - 0.5, color="k", linewidth=0.4)
    for i, r in enumerate((H, 2 * H)):
        ax.axhline(r - 0.5, color="C2", linewidth=2.5, label="q | k | v: rows H and 2H" if i == 0 else None)
    for i, name in enumerate("qkv"):
        ax.text(1.03, i * H + H / 2, name, color="C2", fontsize=14, ha="left", va="center", fontweight="bold",
                transform=ax.get_yaxis_transform())
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), fontsize=9)
    fig.suptitle(f"A Kronecker qkv matrix: block (i, j) of W is A[i, j] · B, block rows {m2} tall; "
                 f"q, k and v are rows 0..{H - 1}, {H}..{2 * H - 1} and {2 * H}..{3 * H - 1}", fontsize=11)
    return fig
