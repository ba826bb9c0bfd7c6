"""Figures of the Kronecker transformer (notebook 12): how much of a matrix its nearest sums of
Kronecker products keep, and where each student of a teacher ends against it."""
from __future__ import annotations

import numpy as np

from dkp.course.figures.axes import new_axes


def kept_energy(singular_values):
    """[share of ||W||_F^2 kept by the nearest sum of r Kronecker products, r = 1, 2, ...]: the
    cumulative sum of the squared singular values of Van Loan's rearrangement R(W) over their total."""
    s2 = np.asarray(singular_values, float) ** 2
    return np.cumsum(s2) / s2.sum()


def plot_kept_energy(spectra, ax=None, title=None, max_rank=None):
    """spectra: {label: singular values of R(W)}; each as the share of ||W||^2 its nearest sum of r
    Kronecker products keeps, against r (r = 1 marked: the one product a KP student starts from)."""
    ax = new_axes(ax, figsize=(7.5, 4.2))
    for i, (label, s) in enumerate(spectra.items()):
        share = kept_energy(s)[:max_rank]
        r = np.arange(1, len(share) + 1)
        ax.plot(r, share, color=f"C{i}", label=f"{label}: rank 1 keeps {share[0]:.1%}")
        ax.scatter([1], [share[0]], color=f"C{i}", zorder=3)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("r, Kronecker products summed (log scale)")
    ax.set_ylabel("share of ||W||_F^2 kept (no unit)")
    ax.set_title(title or "What the nearest sum of r Kronecker products keeps")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_students(rows, teacher, ax=None, title=None, within=0.10):
    """rows: {arm: (mean, sd, whole-model compression)} of final validation perplexities; `teacher`:
    the teachers' mean perplexity, drawn as a line with the band `within` of it shaded. One bar per
    arm, its compression written beside it; a log-scale perplexity axis."""
    ax = new_axes(ax, figsize=(8.5, 0.45 * len(rows) + 1.6))
    names = list(rows)
    y = np.arange(len(names))[::-1]
    means = np.array([rows[a][0] for a in names])
    sds = np.array([rows[a][1] for a in names])
    ax.barh(y, means, xerr=sds, color=[f"C{i}" for i in range(len(names))], alpha=0.75, capsize=3)
    for yi, arm in zip(y, names):      # beside the error bar's end
        ax.text((rows[arm][0] + rows[arm][1]) * 1.03, yi, f"{rows[arm][0]:.1f}  ({rows[arm][2]:.1f}x)", va="center",
                fontsize=8)
    ax.axvline(teacher, color="k", lw=1.2, label=f"the teachers: {teacher:.1f}")
    ax.axvspan(teacher, teacher * (1 + within), color="k", alpha=0.08, label=f"within {within:.0%} of them")
    ax.set_yticks(y, names)
    ax.set_ylabel("student (arm)")
    ax.set_xscale("log")
    ax.set_xlim(teacher * 0.8, max((means + sds).max() * 1.6, teacher * 1.5))
    ax.set_xlabel("final validation perplexity (mean over seeds, bar: +- 1 sd; log scale); in brackets the "
                  "whole-model compression")
    ax.set_title(title or "Each student against its teacher")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax
