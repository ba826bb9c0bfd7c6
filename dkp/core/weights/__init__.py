"""Gate matrices: the one protocol every LSTM weight speaks (see `base`), and its implementations."""
from dkp.core.weights.base import Dense, GateMatrix, stack_caches
from dkp.core.weights.grouped import GroupLowRank
from dkp.core.weights.doped import CMR_VARIANTS, Doped
from dkp.core.weights.hybrid import Hybrid
from dkp.core.weights.kronecker import Kronecker, check_factors
from dkp.core.weights.lowrank import LowRank
from dkp.core.weights.pruned import Pruned
from dkp.core.weights.sparse import Sparse

__all__ = ["GateMatrix", "Dense", "stack_caches", "Kronecker", "check_factors", "LowRank", "Hybrid",
           "Pruned", "Sparse", "Doped", "CMR_VARIANTS", "GroupLowRank"]
