"""Interactive explorers for the notebooks (ipywidgets), built so that their logic runs without a browser.

Every explorer follows the same pattern, so that tests/test_widgets.py can drive it like a student would:

* **Plain functions compute.** They take numbers, return a small frozen dataclass of numbers and
  strings, and never raise on a bad combination of inputs: they return a state whose `error` holds a
  sentence saying what is wrong. They know nothing about widgets.
* **A small class wires widgets to them.** Its controls are attributes (`explorer.hidden`,
  `explorer.m1`, ...); `update()` reads them, calls the functions, keeps the result in
  `explorer.state`, writes the numbers into an HTML widget and redraws the figure. Every control's
  value change calls `update()`, so setting `explorer.m1.value = 520` from code does exactly what
  moving the slider does.
* **Figures live in an `ipywidgets.Output` and are closed after showing**, so redrawing never leaks
  matplotlib figures. `explorer.drawn` records what the last redraw showed (panel titles).
* Show an explorer as a cell's last expression, with `display(explorer)`, or place `explorer.widget`.

Explorers (add new ones as a new section with the same layout):

    KroneckerExplorer   notebook 02: factor shapes of W = A kron B for an LSTM gate matrix (4H, 2H):
                        compression, multiply-adds of both orders against dense, maximum rank, heatmaps
    CMAExplorer         notebook 05: a trained doped model with S pruned further (on a copy) or switched
                        off: perplexity of a validation slice, norms, sparse share and cosine of the
                        two branches (A kron B) x and S x
    GroupReduceExplorer notebook 09 (in dkp.course.groupreduce_explorer, on the same base class):
                        groups and compression of a trained embedding or softmax matrix: GroupReduce's
                        ranks, and its weighted error against one SVD and pruning
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np

from dkp.compression.kron_view import gate_shape, kron_display_arrays, kron_state
from dkp.compression.shapes import divisors
from dkp.course.diagnostics import cma_state, density_options, trained_density
from dkp.course.figures.cma import plot_cma_explorer
from dkp.course.figures.kronecker import plot_kron_heatmaps
from dkp.training.configs import CONFIGS


# JupyterLab styles an HTML widget's table cells with no padding, so columns run together: every
# table the explorers print spaces its cells, and text columns are left-aligned
_CELL = "padding: 2px 14px 2px 0; text-align: {align}; white-space: nowrap"


def html_table(rows, head=None, bold_values=False):
    """An HTML table that stays readable at JupyterLab's default width: `rows` (tuples of cell
    texts) and an optional `head`; the first column left-aligned, the others right-aligned unless
    `bold_values` (a two-column key: value table, both left-aligned, values in bold)."""
    def cell(tag, text, j):
        align = "left" if j == 0 or bold_values else "right"
        text = f"<b>{text}</b>" if bold_values and j > 0 and tag == "td" else text
        return f"<{tag} style='{_CELL.format(align=align)}'>{text}</{tag}>"

    lines = [] if head is None else ["<tr>" + "".join(cell("th", h, j) for j, h in enumerate(head)) + "</tr>"]
    lines += ["<tr>" + "".join(cell("td", v, j) for j, v in enumerate(row)) + "</tr>" for row in rows]
    return "<table>" + "".join(lines) + "</table>"


# ============================================================================================
# Shared plumbing
# ============================================================================================


def nearest_divisor(k, target):
    """The divisor of k closest to `target` (the smaller one on a tie)."""
    return min(divisors(k), key=lambda d: (abs(d - target), d))


class Explorer:
    """Base of the explorers: holds `widget` (the layout), `state` (the last computed state) and
    `drawn` (what the last redraw showed); subclasses build widgets, then call `_connect`."""

    widget = None
    state = None
    drawn = None

    def __init__(self, draw=True):
        self.draw = draw       # False: compute and write the numbers only (no matplotlib)
        self._holding = False  # True while several controls change together: one update at the end

    def compute_state(self):  # pragma: no cover - abstract
        """The state for the controls' current values."""
        raise NotImplementedError

    def summary_html(self):  # pragma: no cover - abstract
        """The numbers of `self.state` as HTML."""
        raise NotImplementedError

    def figure(self):  # pragma: no cover - abstract
        """The explorer's figure for the current state (close it after showing it)."""
        raise NotImplementedError

    def update(self):
        """Recompute the state from the controls, rewrite the numbers, redraw (when drawing)."""
        self.state = self.compute_state()
        self.summary.value = self.summary_html()
        if not self.draw:
            return self.state
        if self.state.valid:
            self._redraw(self.plot, self.figure)
        else:
            self.plot.clear_output()
            self.drawn = []
        return self.state

    def _connect(self, *controls):
        for control in controls:
            control.observe(self._changed, names="value")

    def _changed(self, change):
        if not self._holding:
            self.update()

    @contextmanager
    def _hold(self):
        """Change several controls with one update at the end (or none, if already holding)."""
        outer = self._holding
        self._holding = True
        try:
            yield
        finally:
            self._holding = outer
        if not outer:
            self.update()

    def _redraw(self, output, make_figure):
        """Clear `output` and show the Figure `make_figure()` returns inside it, then close it.
        Records the figure's axes titles in `self.drawn`."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        output.clear_output(wait=True)
        fig = make_figure()
        try:
            self.drawn = [ax.get_title() for ax in fig.axes if ax.get_title()]
            with output:
                display(fig)
        finally:
            plt.close(fig)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


# ============================================================================================
# Kronecker explorer (notebook 02)
# ============================================================================================

# The hidden sizes offered: a few tiny ones whose whole matrix fits on screen, then the course's configs.
_NAMES = {c.hidden: name for name, c in CONFIGS.items()}
HIDDEN_SIZES = (2, 3, 4, 8, 16, *sorted(_NAMES))


def kron_state_html(s):
    """The explorer's text: the numbers of a KronState as a small HTML table, or its error."""
    if not s.valid:
        return f"<p style='color:#b00'><b>Not a Kronecker factorisation of W.</b> {s.error}</p>"
    mark = {"B first": "", "A first": ""}
    mark[s.cheaper] = " ← cheaper"
    terms = f"sum of {s.rank} products " if s.rank > 1 else ""
    rows = [
        ("W", f"{s.m} x {s.n} = {terms}A {s.m1} x {s.n1} ⊗ B {s.m2} x {s.n2}"),
        ("stored numbers", f"{s.n_params:,} (dense: {s.dense_params:,})"),
        ("compression", f"{s.compression:.4g}x"),
        ("multiply-adds per row, B first: A @ (X @ Bᵀ)", f"{s.flops_b_first:,}{mark['B first']}"),
        ("multiply-adds per row, A first: (A @ X) @ Bᵀ", f"{s.flops_a_first:,}{mark['A first']}"),
        ("multiply-adds per row, dense x @ Wᵀ", f"{s.dense_flops:,}"),
        ("speed bound (dense / cheaper order)", f"{s.speed_bound:.4g}x"),
        ("maximum rank of W", f"{s.max_rank:,} of min(m, n) = {min(s.m, s.n):,}"
                              + (" (full rank possible)" if s.full_rank else "")),
    ]
    note = f"<p style='color:#a60'>{s.note}</p>" if s.note else ""
    return html_table(rows, bold_values=True) + note


class KroneckerExplorer(Explorer):
    """Choose the factor shapes of an LSTM gate matrix W (4H, 2H) = A (m1, n1) ⊗ B (m2, n2) and see
    the compression, the multiply-adds of both multiplication orders against dense, the maximum rank,
    and heatmaps of seeded random A, B and A ⊗ B (top-left blocks when they are large).

    Controls: hidden (H), m1, n1, m2, n2 (divisors of m and n), linked (keep m1·m2 = m and
    n1·n2 = n: moving one side moves its partner), rank (products summed), seed.
    Unlinked, any combination can be chosen, and an impossible one is explained, not raised."""

    def __init__(self, hidden=64, m1=None, n1=None, rank=1, seed=0, max_side=48, draw=True,
                 hidden_sizes=HIDDEN_SIZES):
        import ipywidgets as w

        super().__init__(draw)
        self.max_side = int(max_side)
        sizes = sorted(set(hidden_sizes) | {int(hidden)})
        labels = [self._hidden_label(h) for h in sizes]
        # wide enough for its longest label ("H = 650 (medium): W 2600 x 1300") and the arrow
        self.hidden = w.Dropdown(options=list(zip(labels, sizes)), value=int(hidden), description="H",
                                 layout=w.Layout(width=f"{max(map(len, labels)) + 10}ch"))
        slider = dict(continuous_update=False, layout=w.Layout(width="28em"))
        self.m1 = w.SelectionSlider(options=[1], description="m1 (A rows)", **slider)
        self.n1 = w.SelectionSlider(options=[1], description="n1 (A cols)", **slider)
        self.m2 = w.SelectionSlider(options=[1], description="m2 (B rows)", **slider)
        self.n2 = w.SelectionSlider(options=[1], description="n2 (B cols)", **slider)
        for s in (self.m1, self.n1, self.m2, self.n2):
            s.style.description_width = "7em"
        self.linked = w.Checkbox(value=True, description="keep m1·m2 = m and n1·n2 = n", indent=False)
        self.rank = w.IntSlider(value=int(rank), min=1, max=8, description="rank r", continuous_update=False)
        self.seed = w.IntText(value=int(seed), description="seed", layout=w.Layout(width="12em"))
        self.summary = w.HTML()
        self.plot = w.Output()
        self.widget = w.VBox([
            w.HBox([self.hidden, self.linked]),
            w.HBox([w.VBox([self.m1, self.n1]), w.VBox([self.m2, self.n2])]),
            w.HBox([self.rank, self.seed]),
            self.summary, self.plot])
        self._set_matrix(int(hidden), m1, n1)   # also the first update()
        self.hidden.observe(self._hidden_changed, names="value")
        self.linked.observe(self._linked_changed, names="value")
        for side in (self.m1, self.n1, self.m2, self.n2):
            side.observe(self._side_changed, names="value")
        self._connect(self.rank, self.seed)

    @staticmethod
    def _hidden_label(h):
        m, n = gate_shape(h)
        name = f" ({_NAMES[h]})" if h in _NAMES else ""
        return f"H = {h}{name}: W {m} x {n}"

    @property
    def shape(self):
        """(m, n) of the gate matrix for the current H."""
        return gate_shape(self.hidden.value)

    def _set_matrix(self, hidden, m1=None, n1=None):
        """New (m, n): divisors as the sliders' options, and a starting split (given, or the
        divisors nearest sqrt(m) and sqrt(n): two factors of similar size)."""
        m, n = gate_shape(hidden)
        m1 = nearest_divisor(m, math.sqrt(m)) if m1 is None else int(m1)
        n1 = nearest_divisor(n, math.sqrt(n)) if n1 is None else int(n1)
        if m % m1 or n % n1:
            raise ValueError(f"m1 = {m1} and n1 = {n1} must divide m = {m} and n = {n}")
        with self._hold():
            for s, k, v in ((self.m1, m, m1), (self.m2, m, m // m1), (self.n1, n, n1), (self.n2, n, n // n1)):
                opts = divisors(k)
                # a value valid in both option lists first, so the slider never holds an invalid value
                s.value = s.value if s.value in opts else 1
                s.options = opts
                s.value = v

    def _hidden_changed(self, change):
        self._set_matrix(change["new"])

    def _linked_changed(self, change):
        """Linking again makes B's sides follow A's (unlinking changes nothing shown)."""
        if change["new"]:
            with self._hold():
                m, n = self.shape
                self.m2.value, self.n2.value = m // self.m1.value, n // self.n1.value

    def _side_changed(self, change):
        """One side moved. Linked, its partner follows (m1 <-> m2, n1 <-> n2); then one update."""
        if self._holding:
            return
        with self._hold():
            if self.linked.value:
                m, n = self.shape
                partner, k = {id(self.m1): (self.m2, m), id(self.m2): (self.m1, m),
                              id(self.n1): (self.n2, n), id(self.n2): (self.n1, n)}[id(change["owner"])]
                partner.value = k // change["new"]

    def compute_state(self):
        m, n = self.shape
        return kron_state(m, n, self.m1.value, self.n1.value, self.m2.value, self.n2.value, self.rank.value)

    def summary_html(self):
        return kron_state_html(self.state)

    def figure(self):
        s = self.state
        A, B, W = kron_display_arrays(s, seed=self.seed.value, max_side=self.max_side)
        fig = plot_kron_heatmaps(A, B, W, shapes=((s.m1, s.n1), (s.m2, s.n2)))
        if s.rank > 1:  # A and B show the first term; W the whole sum
            fig.axes[0].set_title(fig.axes[0].get_title().replace("A", "A[0]", 1), fontsize=10)
            fig.axes[1].set_title(fig.axes[1].get_title().replace("B", "B[0]", 1), fontsize=10)
            fig.axes[2].set_title(fig.axes[2].get_title().replace("A ⊗ B", f"W = sum of {s.rank} products"),
                                  fontsize=10)
            fig.suptitle(f"W = A[0] ⊗ B[0] + ... + A[{s.rank - 1}] ⊗ B[{s.rank - 1}]: every block of W is a "
                         f"combination of the B[k]  ({s.m} x {s.n} from {s.n_params:,} stored numbers)",
                         fontsize=11)
        return fig


# ============================================================================================
# Co-matrix adaptation explorer (notebook 05)
# ============================================================================================
#
# A trained doped model, a validation slice, and two controls: the density of S (lowered by
# magnitude, on a copy) and S on or off. The model the user passes is never touched: every number
# is computed on a deep copy (evaluation alone would flip its `training` flags).


def cma_state_html(s, reference=None, s_off=None):
    """The explorer's text for a CMAState; `reference`: perplexity at the trained density with S on,
    `s_off`: perplexity with S switched off (both optional, shown for comparison)."""
    if not s.valid:
        return f"<p style='color:#b00'><b>Not possible.</b> {s.error}</p>"
    how = (f"S on, pruned to density {s.density:.4g} ({s.nnz:,} entries kept in all layers)" if s.s_enabled
           else "S switched off: the structured part alone")
    rows = [("model", how), ("validation perplexity (slice)", f"{s.ppl:.2f}")]
    if reference is not None:
        rows.append(("with S at the trained density", f"{reference:.2f} (change {s.ppl / reference - 1:+.1%})"))
    if s_off is not None:
        rows.append(("with S switched off", f"{s_off:.2f}"))
    head = ("layer", "mean ‖KP x‖", "mean ‖S x‖", "sparse share", "cosine(KP x, S x)")
    stats = [(r["layer"], f"{r['norm_structured']:.3f}", f"{r['norm_sparse']:.3f}", f"{r['sparse_share']:.3f}",
              f"{r['cosine']:+.3f}") for r in s.layers]
    return (html_table(rows, bold_values=True) + f"<p>Branch outputs of the gate pre-activation with S on at "
            f"density {s.density:.4g}, averaged over the slice's inputs:</p>" + html_table(stats, head))


class CMAExplorer(Explorer):
    """Lower the density of S in a trained doped model, or switch S off, and watch the validation
    perplexity of a slice and the two branches of the gate pre-activation, W x = (A ⊗ B) x + S x.

    Controls: density (a slider over log-spaced densities from the trained one down to `lowest`
    times it; lowering prunes a copy of S by magnitude) and s_on (S switched on or off). The model is
    snapshotted (deep-copied) once, so training it further does not change what the explorer shows,
    and the explorer never changes it. States are cached: revisiting a setting costs nothing."""

    def __init__(self, model, ids, batch=10, bptt=20, lowest=0.01, n_options=9, draw=True):
        import copy

        import ipywidgets as w

        super().__init__(draw)
        self.trained = trained_density(model)                  # ValueError when nothing is doped
        self.model = copy.deepcopy(model)
        self.ids, self.batch, self.bptt = np.asarray(ids), int(batch), int(bptt)
        self.cache = {}
        options = density_options(self.trained, lowest, n_options)
        self.density = w.SelectionSlider(
            options=[(f"{d:.3g}" + (" (trained)" if i == 0 else ""), d) for i, d in enumerate(options)],
            value=options[0], description="density of S", continuous_update=False,
            layout=w.Layout(width="36em"), style={"description_width": "8em"})
        self.s_on = w.ToggleButton(value=True, description="S on", tooltip="switch S off: the structured part alone")
        self.summary = w.HTML()
        self.plot = w.Output()
        note = w.HTML(f"<p>Densities above the trained one ({self.trained:.4g}) are not offered: the anneal "
                      f"has pruned those entries of S and their values are gone.</p>")
        self.widget = w.VBox([w.HBox([self.density, self.s_on]), note, self.summary, self.plot])
        self._connect(self.density, self.s_on)
        self.update()

    def state_at(self, density, s_enabled=True):
        """The (cached) CMAState at a density, S on or off."""
        key = (float(density), bool(s_enabled))
        if key not in self.cache:
            self.cache[key] = cma_state(self.model, self.ids, density, s_enabled, self.batch, self.bptt)
        return self.cache[key]

    @property
    def reference(self):
        """Perplexity at the trained density with S on."""
        return self.state_at(self.trained, True).ppl

    @property
    def s_off(self):
        """Perplexity with S switched off (the same at every density)."""
        return self.state_at(self.trained, False).ppl

    def visited(self):
        """(densities, perplexities) with S on, of every valid density computed so far, sorted."""
        pts = sorted((d, s.ppl) for (d, on), s in self.cache.items() if on and s.valid)
        return [d for d, _ in pts], [p for _, p in pts]

    def compute_state(self):
        """The state for the controls, computed or fetched from the cache."""
        self.s_on.description = "S on" if self.s_on.value else "S off"
        return self.state_at(self.density.value, self.s_on.value)

    def summary_html(self):
        s_off = self.s_off if not self.s_on.value or (self.trained, False) in self.cache else None
        return cma_state_html(self.state, self.reference, s_off)

    def figure(self):
        off = self.cache.get((self.trained, False))
        return plot_cma_explorer(self.visited(), self.state, self.reference, off.ppl if off else None, self.trained)
