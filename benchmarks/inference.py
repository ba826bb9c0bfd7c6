"""Inference speed of one LSTM layer at H = 650 (gate matrix 2600 x 1300, Zaremba medium), float32.

    python benchmarks/inference.py [--quick] [--json PATH] [--blas-threads 1]

Times the gate-matrix product plus the LSTM cell non-linearities for one timestep and for a
35-step sequence (h and c carried), at batch 1 and batch 20, for: dense (BLAS), Kronecker at 25x
(the factor shapes `dkp.shapes.kron_shape` picks, and the cheapest 25x split for comparison), doped
KP at densities 0.5%, 1% and 2%, low rank (LMF), hybrid (HMD) and pruned (CSR) at the same 25x.

Each time is the median of repeats; its speed-up is over dense measured in the same run; the FLOP
bound is dense multiply-adds / the method's multiply-adds for the gate product alone (the cell's
element-wise work, the same for all, is not counted). Only ratios mean anything: absolute times
depend on the machine and on whatever else runs on it.
"""
import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few repeats and only batch 1 (a smoke run)")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON to PATH")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="BLAS threads for the dense products (default 1: the Numba kernels use one core)")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # BLAS reads its thread count when NumPy is first imported
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.blas_threads)

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from dkp import shapes  # noqa: E402
from dkp.weights import Dense, Doped, Hybrid, Kronecker, LowRank, Pruned  # noqa: E402

H = 650
SHAPE = (4 * H, 2 * H)
TARGET = 25
STEPS = 35


def gate_matrices(rng):
    """[(name, matrix, multiply-adds per row)] at 25x, float32."""
    m, n = SHAPE
    u = lambda *s: rng.uniform(-0.05, 0.05, s).astype(np.float32)  # noqa: E731
    out = [("dense", Dense(u(m, n)), m * n)]
    ks = shapes.kron_shape(SHAPE, TARGET)
    kp = Kronecker.init(SHAPE, ks, 1, rng, 0.05, np.float32)
    out.append((f"kp {ks.m1}x{ks.n1} (x) {ks.m2}x{ks.n2}", kp, ks.flops))
    meet = [c for c in shapes.kron_candidates(SHAPE, 1, 1) if c.compression >= TARGET * 0.999]
    lowest = min(c.compression for c in meet)  # the cheapest split as close to 25x as kron_shape's pick
    cheap = min((c for c in meet if c.compression <= lowest * 1.05), key=lambda c: (c.flops, c.m2 * c.n2))
    out.append((f"kp {cheap.m1}x{cheap.n1} (x) {cheap.m2}x{cheap.n2}",
                Kronecker.init(SHAPE, cheap, 1, rng, 0.05, np.float32), cheap.flops))
    for density in (0.005, 0.01, 0.02):
        D = Doped(kp, density, S=u(m, n))
        out.append((f"doped kp {density:.1%}", D, ks.flops + D.nnz))
    r = shapes.low_rank_rank(SHAPE, TARGET)
    out.append((f"lmf r={r}", LowRank.init(SHAPE, r, rng, 0.05, np.float32), r * (m + n)))
    d, r = shapes.hybrid_shape(SHAPE, TARGET)
    out.append((f"hmd {d} rows+r={r}", Hybrid.init(SHAPE, d, r, rng, 0.05, np.float32), d * n + r * (m - d + n)))
    P = Pruned(u(m, n))
    P.set_sparsity(shapes.pruning_sparsity(SHAPE, TARGET))
    out.append(("pruned (csr)", P.to_sparse(), P.n_params))
    return out


def lstm_step(W, x, h, c):
    """One LSTM cell step: gates z = [x, h] @ W.T (bias omitted), blocks i, f, g, o."""
    z = W.forward(np.concatenate((x, h), axis=1))[0]        # (B, 4H)
    s = 1.0 / (1.0 + np.exp(-z))                             # sigmoid of every block; g uses tanh
    c = s[:, H:2 * H] * c + s[:, :H] * np.tanh(z[:, 2 * H:3 * H])
    return s[:, 3 * H:] * np.tanh(c), c


def median_time(fn, repeats):
    fn()  # warm-up: Numba compiles (or loads its disk cache), caches fill
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(quick=False):
    rng = np.random.default_rng(0)
    mats = gate_matrices(rng)
    batches = (1,) if quick else (1, 20)
    rows = []
    for batch in batches:
        xs = rng.standard_normal((STEPS, batch, H)).astype(np.float32)
        h0 = np.zeros((batch, H), np.float32)

        def one_step(W):
            return lambda: lstm_step(W, xs[0], h0, h0)

        def sequence(W):
            def f():
                h, c = h0, h0
                for t in range(STEPS):
                    h, c = lstm_step(W, xs[t], h, c)
            return f
        for mode, make, repeats in (("1 step", one_step, 20 if quick else (300 if batch == 1 else 60)),
                                    (f"{STEPS} steps", sequence, 3 if quick else (30 if batch == 1 else 8))):
            dense_t = None
            for name, W, flops in mats:
                t = median_time(make(W), repeats)
                dense_t = dense_t or t
                rows.append({"method": name, "batch": batch, "mode": mode, "seconds": t,
                             "speedup": dense_t / t, "flop_bound": mats[0][2] / flops,
                             "n_params": W.n_params, "compression": SHAPE[0] * SHAPE[1] / W.n_params})
    return rows


def print_table(rows):
    print(f"{'method':<26}{'params':>9}{'comp':>7}{'batch':>6}{'mode':>10}{'time':>11}{'speed-up':>10}"
          f"{'flop bound':>11}")
    for r in rows:
        t = r["seconds"]
        ts = f"{t * 1e6:.1f} us" if t < 1e-3 else f"{t * 1e3:.2f} ms"
        print(f"{r['method']:<26}{r['n_params']:>9,}{r['compression']:>6.1f}x{r['batch']:>6}{r['mode']:>10}"
              f"{ts:>11}{r['speedup']:>9.2f}x{r['flop_bound']:>10.1f}x")


def main(args):
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"one LSTM layer, H={H}, gate matrix {SHAPE[0]}x{SHAPE[1]}, float32; BLAS threads "
          f"{args.blas_threads}, Numba single-threaded; load average {load:.2f} on {os.cpu_count()} cores")
    rows = run(args.quick)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": SHAPE, "hidden": H, "dtype": "float32", "blas_threads": args.blas_threads,
                       "load_average": load, "quick": args.quick, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
