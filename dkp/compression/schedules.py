"""Schedules applied between training steps (sparsity of pruning masks, density of S)."""
from __future__ import annotations


def cubic_schedule(step, start, end, initial, final):
    """Zhu & Gupta's gradual schedule: v_t = final + (initial - final) * (1 - (t - start)/(end - start))^3.

    `initial` before `start`, `final` from `end` on, a cubic in between: it moves fast at first and
    slowly near the end. Works in either direction: pruning sparsity 0 -> 0.96, or the density of S
    1 -> 0.01 (doping's anneal).
    """
    if end <= start:
        raise ValueError(f"end must be after start, got start={start} and end={end}")
    if step <= start:
        return float(initial)
    if step >= end:
        return float(final)
    frac = 1.0 - (step - start) / (end - start)
    return float(final + (initial - final) * frac ** 3)
