"""Series and tables read from experiment results (the JSON `python -m dkp experiment` writes): what
the figures draw and the notebooks print, computed once here."""
from __future__ import annotations

import numpy as np

from dkp.study.records import failed_runs


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


def cma_arms(result):
    """The arms of a result that carry a CMA record."""
    return [a for a, e in result["arms"].items() if any(r.get("cma") for r in e.get("runs", []))]


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


def _trained_runs(result, arm):
    failed = {s for s, _ in failed_runs(result).get(arm, [])}
    return [r for r in result["arms"][arm]["runs"] if r["seed"] not in failed]


def probe_series(result, arm):
    """(epochs, mean, sd, n) of the slice perplexity at the grid probes of `arm`'s trained runs
    (S on; the same epochs in every arm of the search)."""
    runs = [r for r in _trained_runs(result, arm) if r.get("probes")]
    if not runs:
        raise ValueError(f"arm {arm!r} has no grid probes (run a search experiment: dkp.study.catalog.SEARCH)")
    points = [{round(p["epoch"], 6): p["ppl"] for p in r["probes"]} for r in runs]
    epochs = sorted(set.intersection(*(set(p) for p in points)))
    v = np.array([[p[e] for e in epochs] for p in points])
    return np.array(epochs), v.mean(0), v.std(0, ddof=1) if len(runs) > 1 else np.zeros(len(epochs)), len(runs)


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
