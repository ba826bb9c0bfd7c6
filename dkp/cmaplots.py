"""Figures, and the small computations behind them, for notebooks 05 (co-matrix adaptation) and 06
(co-matrix dropout). They read experiment results (the JSON of `python -m dkp experiment`) or probe a
`dkp.weights.Doped` matrix through its public protocol, and never train anything. Every figure has a
title, axis labels with units and, when it holds more than one series, a legend.

Reading S as the training forward uses it: feed the n unit vectors e_j as a batch. Row j of the
sparse branch's output y - structured(x) is then column j of the effective S (S with co-matrix
dropout applied), so the output of one training forward, transposed, *is* that minibatch's S_eff.
"""
from __future__ import annotations

import numpy as np

from .plots import _axes, cma_series

# --- CMA along the anneal (notebook 05) ------------------------------------------------------------


def cma_arms(result):
    """The arms of a result that carry a CMA record."""
    return [a for a, e in result["arms"].items() if any(r.get("cma") for r in e.get("runs", []))]


def plot_branch_norms(result, arms=None, axes=None, title=None):
    """Two panels along the anneal (x: density of S, log scale, falling to the right): the mean norms
    of the two branch outputs ||(A kron B) x|| and ||S x||, and their mean cosine. Averaged over
    layers and seeds (dkp.plots.cma_series). Returns the two Axes."""
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


def cma_table(result, arm):
    """Text table of an arm's CMA record averaged over seeds, one line per recorded point."""
    s = cma_series(result, arm)
    lines = [f"{'density of S':>12} {'ppl':>9} {'ppl, S off':>11} {'‖KP x‖':>8} {'‖S x‖':>8} {'share':>7} "
             f"{'cosine':>7}"]
    for k in range(len(s["density"])):
        lines.append(f"{s['density'][k]:>12.4g} {s['ppl'][k]:>9.1f} {s['ppl_s_off'][k]:>11.1f} "
                     f"{s['norm_structured'][k]:>8.3f} {s['norm_sparse'][k]:>8.3f} {s['sparse_share'][k]:>7.3f} "
                     f"{s['cosine'][k]:>+7.3f}")
    return "\n".join(lines)


def plot_cma_explorer(visited, state, reference=None, s_off=None, trained=None):
    """The CMA explorer's figure (dkp.widgets.CMAExplorer): left, perplexity of the slice against the
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


def effective_S(W, rng, repeats=2, training=True):
    """S as one forward of `W` (a Doped matrix) uses it, read through the protocol: begin_batch(rng),
    then forward the n unit vectors, `repeats` times in one batch, and subtract the structured branch.
    Returns (repeats, m, n): one S_eff per copy of the unit vectors (equal copies mean the mask was
    shared by every row of the minibatch). W's `training` flag is restored."""
    m, n = W.shape
    eye = np.eye(n, dtype=W.dtype)
    x = np.concatenate([eye] * int(repeats))
    saved = W.training
    try:
        W.training = bool(training)
        W.begin_batch(rng)
        s = W.forward(x)[0] - W.structured_forward(x)               # (repeats * n, m)
    finally:
        W.training = saved
    return s.reshape(repeats, n, m).transpose(0, 2, 1)


def cmr_statistics(W, draws=200, seed=0, repeats=2):
    """What co-matrix dropout does to S over `draws` training minibatches of `W` (a Doped matrix with
    cmr_p and cmr_variant set), from `effective_S`:

    keep_rate         fraction of (draw, copy, stored entry) where S_eff is not zero
    branch_keep_rate  fraction of (draw, copy) where any entry of S_eff is not zero
    scales            min and max of S_eff / S over kept entries (inverted scaling: 1 / (1 - p))
    shared_in_batch   every draw's copies equal (one mask for the whole minibatch)
    all_or_nothing    every draw keeps all entries or none
    mean_ratio        mean over draws of S_eff, divided by S, averaged over entries (1 in expectation)
    eval_max_diff     max |forward in evaluation - (structured + S) x| over the unit vectors
    """
    rng = np.random.default_rng(seed)
    S = W.sparse_dense()
    on = S != 0
    effs = np.stack([effective_S(W, rng, repeats) for _ in range(int(draws))])   # (draws, repeats, m, n)
    kept = (effs != 0) & on
    ratio = effs[kept] / np.broadcast_to(S, effs.shape)[kept]
    per_copy = kept.reshape(draws, repeats, -1).any(-1)                          # (draws, repeats)
    n_on = int(on.sum())
    counts = kept.reshape(draws, -1).sum(-1)
    eye = np.eye(W.shape[1], dtype=W.dtype)
    saved = W.training
    W.training = False
    try:
        y_eval = W.forward(eye)[0]
    finally:
        W.training = saved
    want = eye @ (W.structured.to_dense() + S).T
    return {
        "p": W.cmr_p, "variant": W.cmr_variant, "draws": int(draws), "nnz": n_on,
        "keep_rate": float(kept.sum() / (draws * repeats * n_on)),
        "branch_keep_rate": float(per_copy.mean()),
        "scales": (float(ratio.min()), float(ratio.max())) if ratio.size else (None, None),
        "shared_in_batch": bool(all(np.array_equal(e[0], e[k]) for e in effs for k in range(1, repeats))),
        "all_or_nothing": bool(np.all((counts == 0) | (counts == repeats * n_on))),
        "mean_ratio": float(np.mean(effs.mean(0)[:, on] / S[on])),
        "eval_max_diff": float(np.abs(y_eval - want).max()),
    }


def relative_noise(W, x, draws=200, seed=0):
    """Root-mean-square deviation of the sparse branch's training output from S x, relative to the
    root-mean-square of S x, over `draws` minibatches of inputs `x` (B, n). For element-wise ("output")
    and whole-branch dropout it is sqrt(p / (1 - p)) in expectation."""
    rng = np.random.default_rng(seed)
    clean = W.sparse_forward(x).astype(np.float64)
    saved = W.training
    W.training = True
    try:
        dev = []
        for _ in range(int(draws)):
            W.begin_batch(rng)
            s = W.forward(x)[0].astype(np.float64) - W.structured_forward(x).astype(np.float64)
            dev.append(np.mean((s - clean) ** 2))
    finally:
        W.training = saved
    return float(np.sqrt(np.mean(dev) / np.mean(clean ** 2)))


def plot_cmr_noise(ps, noise, ax=None, title=None):
    """Relative noise of the sparse branch against p, one line per variant ({variant: [values]}),
    with sqrt(p / (1 - p)) drawn for comparison."""
    ax = _axes(ax)
    ps = np.asarray(ps, float)
    fine = np.linspace(ps.min(), ps.max(), 200)
    ax.plot(fine, np.sqrt(fine / (1 - fine)), color="0.3", linestyle=":", label="√(p / (1 − p))")
    for (variant, values), marker in zip(noise.items(), ("o", "s", "^")):
        ax.plot(ps, values, marker=marker, label=f"{variant} (measured)")
    ax.set_xlabel("co-matrix dropout probability p")
    ax.set_ylabel("RMS(S_eff x − S x) / RMS(S x) (no unit)")
    ax.set_title(title or "How much noise co-matrix dropout puts on the sparse branch")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return ax


# --- the cmr experiment (notebook 06) --------------------------------------------------------------


def cmr_p_sweep(result, variant="output"):
    """The arms of a cmr result that differ only in p for `variant` (doped-kp as p = 0):
    [(p, arm)], sorted by p."""
    out = []
    for arm, entry in result["arms"].items():
        cfg = entry["config"]
        if not entry.get("runs"):
            continue
        if cfg.get("cmr_p", 0.0) == 0.0 or cfg.get("cmr_variant") == variant:
            out.append((float(cfg.get("cmr_p", 0.0)), arm))
    return sorted(out)


def plot_cmr_sweep(result, variant="output", ax=None, title=None):
    """Final validation perplexity with S, and with S switched off, against the dropout probability
    p of one variant (mean over seeds, error bars one standard deviation when there are several)."""
    ax = _axes(ax)
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


def s_off_table(result):
    """Text table: per arm, final perplexity with S (validation) and with S switched off (the CMA
    diagnostic slice), mean over seeds, and their ratio."""
    lines = [f"{'arm':<14} {'seeds':>5} {'valid ppl':>10} {'ppl on slice':>13} {'S off':>9} {'S off / on':>11}"]
    for arm, entry in result["arms"].items():
        runs = [r for r in entry.get("runs", []) if r.get("cma")]
        if not runs:
            continue
        valid = np.mean([r["final_valid_ppl"] for r in runs])
        on = np.mean([r["cma"][-1]["ppl"] for r in runs])
        off = np.mean([r["cma"][-1]["ppl_s_off"] for r in runs])
        lines.append(f"{arm:<14} {len(runs):>5} {valid:>10.2f} {on:>13.2f} {off:>9.2f} {off / on:>11.2f}")
    return "\n".join(lines)


# --- verdicts (both notebooks) ---------------------------------------------------------------------


def effect_text(e):
    """One effect of dkp.report.effects as text: the claim, the verdict line (starting with '->') and
    the numbers it was computed from."""
    verdict = {True: "HOLDS", False: "does not hold", None: "not measured"}[e["holds"]]
    lines = [e["claim"], f"  -> {verdict}"]
    for k, v in e.items():
        if k in ("claim", "holds"):
            continue
        if isinstance(v, bool) or v is None or isinstance(v, str):
            text = str(v)
        elif isinstance(v, float):
            text = f"{v:+.1%}" if k.startswith("relative") else f"{v:.2f}"
        elif isinstance(v, tuple) and len(v) == 3:
            text = f"{v[0]:.2f} ± {v[1]:.2f} (mean ± sd over {v[2]} seeds)"
        elif isinstance(v, list):
            text = ", ".join(f"{x:.1f}" for x in v)
        else:
            text = str(v)
        lines.append(f"     {k}: {text}")
    return "\n".join(lines)


# --- the co-matrix adaptation search (data/results/cma-search) ---------------------------------------
def _trained_runs(result, arm):
    from .search import failed_runs
    failed = {s for s, _ in failed_runs(result).get(arm, [])}
    return [r for r in result["arms"][arm]["runs"] if r["seed"] not in failed]


def probe_series(result, arm):
    """(epochs, mean, sd, n) of the slice perplexity at the grid probes of `arm`'s trained runs
    (S on; the same epochs in every arm of the search)."""
    runs = [r for r in _trained_runs(result, arm) if r.get("probes")]
    if not runs:
        raise ValueError(f"arm {arm!r} has no grid probes (run a search experiment: dkp.experiments.SEARCH)")
    points = [{round(p["epoch"], 6): p["ppl"] for p in r["probes"]} for r in runs]
    epochs = sorted(set.intersection(*(set(p) for p in points)))
    v = np.array([[p[e] for e in epochs] for p in points])
    return np.array(epochs), v.mean(0), v.std(0, ddof=1) if len(runs) > 1 else np.zeros(len(epochs)), len(runs)


def plot_probe_curves(result, arms=None, ax=None, title=None, since=None, log=True):
    """Slice perplexity against epoch for each arm (mean over trained seeds, band: +- 1 sd), with each
    annealed arm's window shaded in its colour: where the anneal runs, whether perplexity rises.
    `since`: draw only the probes from that epoch on (a zoom); `log`: a log-scale y axis."""
    ax = _axes(ax, figsize=(8.0, 4.4))
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


def anneal_series(result, arm):
    """{density, ppl, ppl_s_off: (mean, sd) arrays} over `arm`'s trained runs at its anneal points
    (the last one: end of training)."""
    runs = [r for r in _trained_runs(result, arm) if r.get("cma")]
    if not runs:
        raise ValueError(f"arm {arm!r} has no CMA record")
    out = {}
    for key in ("density", "ppl", "ppl_s_off"):
        v = np.array([[p[key] for p in r["cma"]] for r in runs], float)
        out[key] = (v.mean(0), v.std(0, ddof=1) if len(runs) > 1 else np.zeros(v.shape[1]))
    return out


def plot_anneal_curve(result, arms=None, ax=None, title=None, log=True):
    """Slice perplexity with S (solid) and with S switched off (dashed) against the density of S along
    the anneal (log scale, falling to the right), mean +- 1 sd over trained seeds; the last point of
    each line is the end of training."""
    ax = _axes(ax, figsize=(8.0, 4.4))
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
    each arm, one colour per arm; runs that diverged or did not train (dkp.search.failed_runs) are
    drawn dashed. Where a run goes wrong, to the window."""
    from .search import _steps_per_epoch, failed_runs
    ax = _axes(ax, figsize=(8.0, 4.4))
    failed = failed_runs(result)
    for i, arm in enumerate(arms or list(result["arms"])):
        bad = {s for s, _ in failed.get(arm, [])}
        for k, r in enumerate(r for r in result["arms"][arm]["runs"] if r.get("loss_trace")):
            spe = _steps_per_epoch(r) or 1.0
            steps, loss = zip(*r["loss_trace"])
            ax.plot(np.array(steps) / spe, loss, color=f"C{i}", linewidth=1.0,
                    linestyle="--" if r["seed"] in bad else "-",
                    label=f"{arm}" + (" (dashed: did not train)" if bad else "") if k == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (nats per word, mean of 25 steps)")
    ax.set_title(title or "Training loss of every run")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return ax
