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
