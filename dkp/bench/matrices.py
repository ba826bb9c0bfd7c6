"""The inference benchmark's setup, shared by `benchmarks/inference.py` (which times it) and notebook 08
(which explains it): the gate matrices of one medium LSTM layer at about 25x, the timer with optional
cache eviction, and the description of the machine a measurement was taken on."""
from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np

from dkp.compression import shapes
from dkp.core.weights import Dense, Doped, Hybrid, Kronecker, LowRank, Pruned

H = 650


SHAPE = (4 * H, 2 * H)


TARGET = 25


STEPS = 35


VOCAB = 10_000


ROUNDS = 5


@dataclass
class Method:
    name: str
    W: object
    macs: int          # multiply-adds per input row
    max_rank: int

    @property
    def n_bytes(self):
        return self.W.n_bytes

    @property
    def flop_bound(self):
        return SHAPE[0] * SHAPE[1] / self.macs


def kp_label(ks, prefer):
    return f"kp {ks.m1}x{ks.n1} (x) {ks.m2}x{ks.n2} [{prefer}]"


def gate_matrices(rng):
    """The methods, float32, at about 25x."""
    m, n = SHAPE
    u = lambda *s: rng.uniform(-0.05, 0.05, s).astype(np.float32)  # noqa: E731
    out = [Method("dense", Dense(u(m, n)), m * n, min(m, n))]
    kps = {}
    for prefer in ("rank", "flops"):
        ks = shapes.kron_shape(SHAPE, TARGET, prefer=prefer)
        kps[prefer] = ks, Kronecker.init(SHAPE, ks, 1, rng, 0.05, np.float32)
        out.append(Method(kp_label(ks, prefer), kps[prefer][1], ks.flops, ks.max_rank))
    S = u(m, n)
    for prefer, densities in (("rank", (0.01,)), ("flops", (0.005, 0.01, 0.02))):
        ks, kp = kps[prefer]
        for density in densities:
            D = Doped(kp, density, S=S)
            out.append(Method(f"doped {kp_label(ks, prefer)[3:]} +{density:.1%}", D, ks.flops + D.nnz,
                              min(m, n)))
    r = shapes.low_rank_rank(SHAPE, TARGET)
    out.append(Method(f"lmf r={r}", LowRank.init(SHAPE, r, rng, 0.05, np.float32), r * (m + n), r))
    d, r = shapes.hybrid_shape(SHAPE, TARGET)
    out.append(Method(f"hmd {d} rows + r={r}", Hybrid.init(SHAPE, d, r, rng, 0.05, np.float32),
                      d * n + r * (m - d + n), d + r))
    P = Pruned(u(m, n))
    P.set_sparsity(shapes.pruning_sparsity(SHAPE, TARGET))
    out.append(Method("pruned (csr)", P.to_sparse(), P.n_params, min(m, n)))
    return out


class Evictor:
    """Reads a buffer larger than the last-level cache, one float per 64-byte line."""

    def __init__(self, mb):
        self.buf = np.ones(mb * 2**20 // 4, np.float32)

    def __call__(self):
        return float(self.buf[::16].sum())


def measure(calls, repeats, evict=None):
    """{key: median seconds}: ROUNDS passes over all calls; in each pass every call gets one untimed
    warm-up and repeats/ROUNDS timed runs in a row, each preceded by `evict` (outside the timing)."""
    times = {k: [] for k in calls}
    per = max(1, repeats // ROUNDS)
    gc.disable()
    try:
        for _ in range(ROUNDS):
            for key, fn in calls.items():
                fn()
                for _ in range(per):
                    if evict is not None:
                        evict()
                    t = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - t)
    finally:
        gc.enable()
    return {k: statistics.median(v) for k, v in times.items()}


def machine():
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
        info["cpu"] = model or info["cpu"]
    except OSError:
        pass
    for level in (2, 3):
        try:
            with open(f"/sys/devices/system/cpu/cpu0/cache/index{level}/size") as f:
                info[f"l{level}_cache"] = f.read().strip()
        except OSError:
            pass
    info["numba"], info["llvmlite"] = version("numba"), version("llvmlite")
    try:
        import llvmlite.binding as llvm
        info["llvm_host_cpu"] = llvm.get_host_cpu_name()
    except Exception:  # pragma: no cover - informational only
        pass
    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # pragma: no cover
        pass
    return info
