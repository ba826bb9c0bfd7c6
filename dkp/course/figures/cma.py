"""Figures of co-matrix adaptation and co-matrix dropout (notebooks 05 and 06): the branches along the
anneal, the search's slice perplexity and loss traces, the noise CMR puts on S. They draw what
`dkp.course.series` reads from results and `dkp.course.diagnostics` measures on a model; every figure
has a title, axis labels with units and, when it holds more than one series, a legend.
"""
from __future__ import annotations

import numpy as np

from dkp.course.figures.axes import label_axes, new_axes
from dkp.study.metrics import run_steps_per_epoch
from dkp.study.records import failed_runs
from dkp.course.series import anneal_series, cma_arms, cma_series, cmr_p_sweep, probe_series

# --- CMA along the anneal (notebook 05) ------------------------------------------------------------


def plot_branch_norms(result, arms=None, axes=None, title=None):
    """Two panels along the anneal (x: density of S, log scale, falling to the right): the mean norms
    of the two branch outputs ||(A kron B) x|| and ||S x||, and their mean cosine. Averaged over
    layers and seeds (dkp.course.series.cma_series). Returns the two Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11.0, 4.0), layout="constrained")
    left, right = axes
    for i, arm in enumerate(arms or cma_arms(result)):
        s = cma_series(result, arm)
        left.plot(s["density"], s["norm_structured"], marker="o", color=f"C{i}", label=f"{arm}: ‖(A⊗B) x‖")
        left.plot(s["density"], s["norm_sparse"], marker="x", linestyle="--", color=f"C{i}", label=f"{arm}: ‖S x‖")
        right.plot(s["density"], s["cosine"], marker="o", color=f"C{i}", label=arm)
    for ax in axes:
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("density of S (fraction of entries kept, log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    right.axhline(0.0, color="0.4", linewidth=0.8)
    left.set_ylabel("mean L2 norm per input row (no unit)")
    left.set_title("The two branches of W x = (A⊗B) x + S x")
    right.set_ylabel("mean cosine((A⊗B) x, S x) (no unit, -1 to 1)")
    right.set_title("Do the branches agree (+) or cancel (-)?")
    if title:
        left.figure.suptitle(title)
    return axes


def plot_cma_explorer(visited, state, reference=None, s_off=None, trained=None):
    """The CMA explorer's figure (dkp.course.widgets.CMAExplorer): left, perplexity of the slice against the
    density of S for the densities computed so far (S on), with S switched off as a dashed line;
    right, the two branch outputs' mean norms per layer at the current density. Returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.6), layout="constrained")
    xs = list(visited[0]) + [state.density] + ([trained] if trained is not None else [])
    lo, hi = min(xs), max(xs)
    if lo == hi:                           # a single density so far: a decade around it
        lo, hi = lo / 3, hi * 3
    left.set_xlim(hi * 1.3, lo / 1.3)       # falling to the right, as along the anneal
    left.set_xscale("log")
    left.xaxis.set_minor_formatter(NullFormatter())
    dens, ppl = visited
    if dens:
        left.plot(dens, ppl, marker="o", color="C0", label="S on, pruned to this density (no retraining)")
    if s_off is not None:
        left.axhline(s_off, color="C3", linestyle="--", label="S switched off")
    if trained is not None:
        left.axvline(trained, color="0.5", linestyle=":", label="trained density")
    left.plot([state.density], [state.ppl], marker="*", markersize=14, color="C1", linestyle="none",
              label="current: " + ("S on" if state.s_enabled else "S off"))
    left.set_xlabel("density of S (fraction of entries kept, log scale)")
    left.set_ylabel("validation perplexity of the slice (per word)")
    left.set_title("Pruning S further after training")
    left.legend(fontsize=7)
    left.grid(True, which="both", alpha=0.3)
    layers = list(state.layers)
    x = np.arange(len(layers))
    right.bar(x - 0.2, [r["norm_structured"] for r in layers], 0.4, color="C0", label="‖(A⊗B) x‖")
    right.bar(x + 0.2, [r["norm_sparse"] for r in layers], 0.4, color="C1", label="‖S x‖")
    right.set_xticks(x)
    right.set_xticklabels([f"layer {r['layer']}\nshare {r['sparse_share']:.2f}, cos {r['cosine']:+.2f}"
                           for r in layers], fontsize=8)
    right.set_xlabel("LSTM layer (S's share of ||W x||², cosine of the branches)")
    right.set_ylabel("mean L2 norm per input row (no unit)")
    right.set_title(f"Branch outputs, S on at density {state.density:.3g}")
    right.legend(fontsize=8)
    return fig


# --- co-matrix dropout, probed on one matrix (notebook 06) ---------------------------------------


def plot_cmr_noise(ps, noise, ax=None, title=None):
    """Relative noise of the sparse branch against p, one line per variant ({variant: [values]}),
    with sqrt(p / (1 - p)) drawn for comparison."""
    ax = new_axes(ax)
    ps = np.asarray(ps, float)
    fine = np.linspace(ps.min(), ps.max(), 200)
    ax.plot(fine, np.sqrt(fine / (1 - fine)), color="0.3", linestyle=":", label="√(p / (1 − p))")
    for (variant, values), marker in zip(noise.items(), ("o", "s", "^")):
        ax.plot(ps, values, marker=marker, label=f"{variant} (measured)")
    return label_axes(ax, "co-matrix dropout probability p", "RMS(S_eff x − S x) / RMS(S x) (no unit)", title or "How much noise co-matrix dropout puts on the sparse branch")


# --- the cmr experiment (notebook 06) --------------------------------------------------------------


def plot_cmr_sweep(result, variant="output", ax=None, title=None):
    """Final validation perplexity with S, and with S switched off, against the dropout probability
    p of one variant (mean over seeds, error bars one standard deviation when there are several)."""
    ax = new_axes(ax)
    sweep = cmr_p_sweep(result, variant)
    ps = [p for p, _ in sweep]
    for key, label, style in (("final_valid_ppl", "with S (final validation)", dict(marker="o", color="C0")),
                              ("ppl_s_off", "S switched off (diagnostic slice)",
                               dict(marker="x", linestyle="--", color="C3"))):
        means, sds = [], []
        for _, arm in sweep:
            runs = result["arms"][arm]["runs"]
            v = np.array([r[key] if key in r else r["cma"][-1][key] for r in runs], float)
            means.append(v.mean())
            sds.append(v.std(ddof=1) if len(v) > 1 else 0.0)
        ax.errorbar(ps, means, yerr=sds, capsize=4, label=label, **style)
    ax.set_xlabel(f"co-matrix dropout probability p ({variant!r} variant; 0: no CMR)")
    ax.set_ylabel("perplexity (per word)")
    ax.set_title(title or f"{result['experiment']}: dropping S's output during training")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


# --- verdicts (both notebooks) ---------------------------------------------------------------------


# --- the co-matrix adaptation search (data/results/cma-search) ---------------------------------------


def plot_probe_curves(result, arms=None, ax=None, title=None, since=None, log=True):
    """Slice perplexity against epoch for each arm (mean over trained seeds, band: +- 1 sd), with each
    annealed arm's window shaded in its colour: where the anneal runs, whether perplexity rises.
    `since`: draw only the probes from that epoch on (a zoom); `log`: a log-scale y axis."""
    ax = new_axes(ax, figsize=(8.0, 4.4))
    for i, arm in enumerate(arms or [a for a, e in result["arms"].items() if e["runs"]]):
        epochs, mean, sd, n = probe_series(result, arm)
        if since is not None:
            keep = epochs >= since - 1e-9
            epochs, mean, sd = epochs[keep], mean[keep], sd[keep]
        config = result["arms"][arm]["config"]
        annealed = config.get("doping") and config.get("anneal_s", True)
        label = f"{arm} ({n} seeds)" + ("" if annealed or not config.get("doping") else ", S never annealed")
        ax.plot(epochs, mean, marker="o", markersize=3, color=f"C{i}", label=label)
        ax.fill_between(epochs, mean - sd, mean + sd, color=f"C{i}", alpha=0.2, linewidth=0)
        if annealed and (since is None or config["anneal_end"] > since):
            ax.axvspan(max(config["anneal_start"], since or 0.0), config["anneal_end"], color=f"C{i}", alpha=0.08)
    return _slice_perplexity_axes(ax, log, "epoch (shaded: each arm's anneal window, S from dense to its final density)",
                                  title or "Perplexity during training, at the same epochs in every arm")


def _slice_perplexity_axes(ax, log, xlabel, title):
    """Labels, scale, grid and legend of a figure of validation-slice perplexity."""
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation-slice perplexity (per word" + (", log scale)" if log else ")"))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_anneal_curve(result, arms=None, ax=None, title=None, log=True):
    """Slice perplexity with S (solid) and with S switched off (dashed) against the density of S along
    the anneal (log scale, falling to the right), mean +- 1 sd over trained seeds; the last point of
    each line is the end of training."""
    ax = new_axes(ax, figsize=(8.0, 4.4))
    for i, arm in enumerate(arms or cma_arms(result)):
        s = anneal_series(result, arm)
        d = s["density"][0]
        for key, style, what in (("ppl", "-", "with S"), ("ppl_s_off", "--", "S switched off")):
            mean, sd = s[key]
            ax.errorbar(d, mean, yerr=sd, marker="o" if key == "ppl" else "x", linestyle=style, color=f"C{i}",
                        capsize=3, markersize=4, label=f"{arm}: {what}")
    ax.set_xscale("log")
    ax.invert_xaxis()
    return _slice_perplexity_axes(ax, log, "density of S (fraction of entries kept, log scale; training runs left to right)",
                                  title or "Perplexity along the anneal, with S and with S switched off")


def plot_loss_traces(result, arms=None, ax=None, title=None):
    """The training loss (mean over 25-step windows, nats per word) against epoch for every run of
    each arm, one colour per arm; runs that diverged or did not train (dkp.study.records.failed_runs) are
    drawn dashed. Where a run goes wrong, to the window."""
    ax = new_axes(ax, figsize=(8.0, 4.4))
    failed = failed_runs(result)
    for i, arm in enumerate(arms or list(result["arms"])):
        bad = {s for s, _ in failed.get(arm, [])}
        for k, r in enumerate(r for r in result["arms"][arm]["runs"] if r.get("loss_trace")):
            spe = run_steps_per_epoch(r) or 1.0
            steps, loss = zip(*r["loss_trace"])
            ax.plot(np.array(steps) / spe, loss, color=f"C{i}", linewidth=1.0,
                    linestyle="--" if r["seed"] in bad else "-",
                    label=f"{arm}" + (" (dashed: did not train)" if bad else "") if k == 0 else None)
    return label_axes(ax, "epoch", "training loss (nats per word, mean of 25 steps)", title or "Training loss of every run")


def plot_cma(result, arms=None, ax=None, title=None):
    """Perplexity with S and with S switched off along the anneal (x: density of S, log scale,
    falling to the right), one pair of lines per arm."""
    ax = new_axes(ax)
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
    ax = new_axes(ax)
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
