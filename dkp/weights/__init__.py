"""Gate matrices: the one protocol every LSTM weight speaks (see `base`), and its implementations."""
from .base import Dense, GateMatrix, stack_caches
from .doped import CMR_VARIANTS, Doped
from .hybrid import Hybrid
from .kronecker import Kronecker, check_factors
from .lowrank import LowRank
from .pruned import Pruned
from .sparse import Sparse

__all__ = ["GateMatrix", "Dense", "stack_caches", "Kronecker", "check_factors", "LowRank", "Hybrid",
           "Pruned", "Sparse", "Doped", "CMR_VARIANTS"]
