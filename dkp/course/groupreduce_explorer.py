"""The GroupReduce explorer of notebook 09: groups and compression of a trained embedding or softmax
matrix turned into GroupReduce's ranks and its frequency-weighted error against one SVD and
magnitude pruning at the same budget. Built like the explorers of dkp.course.widgets (whose base
class it uses): plain functions compute, the class wires widgets to them."""
from __future__ import annotations

import numpy as np

from dkp.course.widgets import Explorer, html_table


def budget_state_html(s, what="matrix"):
    """The explorer's text for a `dkp.compression.groupreduce.BudgetState`."""
    from dkp.course.figures.groupreduce import METHOD_LABELS

    if not s.valid:
        return f"<p style='color:#b00'><b>Not possible.</b> {s.error}</p>"
    rows = [(METHOD_LABELS[k], f"{s.n_params[k]:,}", f"{s.dense / s.n_params[k]:.2f}x", f"{s.weighted_error[k]:.4f}")
            for k in s.weighted_error]
    head = ("method", "parameters kept", "compression", "weighted relative error")
    ranks = ", ".join(str(r) for r in s.ranks)
    return (f"<p>{what}: budget {s.budget:,} parameters ({s.compression:g}x). GroupReduce's ranks, most "
            f"frequent group first: <b>{ranks}</b> (groups of {min(s.sizes):,} to {max(s.sizes):,} words).</p>"
            + html_table(rows, head))


class GroupReduceExplorer(Explorer):
    """Turn the number of groups and the compression of a trained embedding or softmax matrix into
    GroupReduce's ranks and the frequency-weighted reconstruction error of GroupReduce, one SVD and
    magnitude pruning at the same budget.

    Controls: groups (a slider), compression (a slider) and matrix (a dropdown over the matrices
    given, e.g. {"embedding": E, "softmax": D}). States are cached: revisiting a setting is free."""

    def __init__(self, matrices, freq, groups=10, compression=6.0, max_groups=40, draw=True):
        import ipywidgets as w

        super().__init__(draw)
        if not matrices:
            raise ValueError("matrices must name at least one (V, H) matrix, e.g. {'embedding': E}")
        self.matrices = {k: np.asarray(v) for k, v in matrices.items()}
        self.freq = np.asarray(freq, np.float64)
        self.cache = {}
        style = {"description_width": "8em"}
        self.matrix = w.Dropdown(options=list(self.matrices), description="matrix", style=style)
        self.groups = w.IntSlider(value=groups, min=1, max=max_groups, description="groups",
                                  continuous_update=False, style=style, layout=w.Layout(width="30em"))
        self.compression = w.FloatSlider(value=compression, min=1.5, max=30.0, step=0.5, description="compression",
                                         continuous_update=False, style=style, layout=w.Layout(width="30em"),
                                         readout_format=".1f")
        self.summary = w.HTML()
        self.plot = w.Output()
        self.widget = w.VBox([self.matrix, self.groups, self.compression, self.summary, self.plot])
        self._connect(self.matrix, self.groups, self.compression)
        self.update()

    def compute_state(self):
        from dkp.compression.groupreduce import budget_state

        key = (self.matrix.value, int(self.groups.value), float(self.compression.value))
        if key not in self.cache:
            self.cache[key] = budget_state(self.matrices[key[0]], self.freq, key[1], key[2])
        return self.cache[key]

    def summary_html(self):
        return budget_state_html(self.state, self.matrix.value)

    def figure(self):
        from dkp.course.figures.groupreduce import plot_budget

        return plot_budget(self.state, self.matrix.value)
