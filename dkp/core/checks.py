"""Checks of arguments shared across layers, each failing with an error that names the argument and
what was expected (no NumPy traceback from deep inside)."""
from __future__ import annotations


def check_matrix_shape(shape, name="shape"):
    """Validate an (m, n) shape of positive ints and return it as a tuple."""
    try:
        m, n = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (rows, cols) of positive integers, got {shape!r}") from None
    if m <= 0 or n <= 0:
        raise ValueError(f"{name} must be a pair (rows, cols) of positive integers, got {shape!r}")
    return m, n


def _as_number(value, name, interval):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}") from None


def check_fraction(value, name):
    """Validate a number in [0, 1) (a dropout probability, a sparsity) and return it as a float."""
    v = _as_number(value, name, "[0, 1)")
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v


def check_density(value, name="density"):
    """Validate a density in (0, 1] (the fraction of a sparse matrix's entries kept) and return it."""
    v = _as_number(value, name, "(0, 1]")
    if not 0.0 < v <= 1.0:
        raise ValueError(f"{name} must be in (0, 1] (the fraction of S's entries kept), got {value!r}")
    return v
