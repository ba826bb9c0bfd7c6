"""Gate matrices: the one protocol every LSTM weight speaks (see `base`), and its implementations."""
from .base import Dense, GateMatrix, stack_caches

__all__ = ["GateMatrix", "Dense", "stack_caches"]
