"""Inference speed of one LSTM layer at H = 650 (gate matrix 2600 x 1300, Zaremba medium), float32,
and why Kronecker products are fast: arithmetic against memory traffic.

    python benchmarks/inference.py [--quick] [--json PATH] [--cache {both,warm,cold}]
                                   [--blas-threads 1] [--evict-mb 64]

Methods, all at about 25x fewer parameters than dense: dense (BLAS); Kronecker with the split
`dkp.compression.shapes.kron_shape` picks by default (prefer="rank": A 520x260 kron B 5x5, full rank reachable,
dense / KP multiply-adds 4.95x) and the split chosen for speed (prefer="flops": A 200x650 kron B
13x2, 26x, 12.7x fewer multiply-adds, max rank 400); doped KP (that KP + S at 0.5%, 1% and 2%;
1% makes both about 20x overall); low rank (LMF), hybrid (HMD) and pruned (CSR) at 25x.

Two code paths per method:
  layer   the model's layer on one step (`dkp.core.lstm_fast.FastLSTMLayer.forward`, cache kept): the
          training/evaluation code. For dense (and pruned) its fast path: the input and recurrent
          halves of the gate product by BLAS (W_h read in place, no copy at one step), the cell in
          one Numba call; for the other matrices the reference (`LSTMLayer.forward`, NumPy cell)
  fused   `dkp.core.inference.LSTMStep`: for KP and doped KP at batch <= 8 one Numba call does the
          gate product and the cell (weights packed once); otherwise the matrix's own product (BLAS
          for dense) followed by the cell in one Numba call

Two cache modes (both by default):
  warm    a hot loop: the same weights every call, so they stay in cache. This is what a
          microbenchmark of one layer measures by default, and it flatters dense: its 13.5 MB
          matrix fits in this machine's 32 MB L3, so BLAS streams it from L3, not from memory.
  cold    before every timed call (outside the timed region) a buffer larger than L3 (64 MB) is
          read, which evicts the weights (and everything else) from every cache level. This is
          what a layer sees inside a real model: a whole step of the medium model touches both
          gate matrices (2 x 13.5 MB), the softmax (26 MB) and embedding rows, about 55-80 MB,
          more than L3, so each layer's weights come back from DRAM at every step.

Columns: weight bytes (index arrays included), multiply-adds (MACs) per input row, the largest
rank W can have, arithmetic intensity FLOP/B = FLOPs (2 per MAC, times the batch) per byte of
weights, and the FLOP bound = dense MACs / method MACs (the cell's element-wise work, the same for
all, is not counted); then the time and speed-up of each path, and the GFLOP/s and weight GB/s
(weight bytes / time) of the fused path. A method beats its FLOP bound when dense is limited by
memory traffic rather than by arithmetic: at batch 1 dense does 0.5 FLOP per weight byte, so it
runs at the speed its 13.5 MB arrive (L3 warm, DRAM cold), while a KP's half megabyte does 1-2.5
FLOPs per byte and stays in L2. Speed-ups are over dense's fastest path: the faster of its two
paths (layer and fused) in the same run, same batch, cache mode and number of steps; each row
names it ("baseline") and its time ("baseline_seconds"), and each table's title says which it
was. Under each table, the floor: the same code paths on a tiny (H = 4) layer, i.e. the per-call
overhead of Python, NumPy and the Numba dispatcher that no weight format removes (in the cold mode
this overhead includes refetching that code and interpreter state from DRAM).

Each time is the median over repeats taken in several rounds that alternate between methods, so
a change in the machine's load hits all methods alike. Absolute times depend on the machine and on
whatever else runs on it (the numbers are noisy); only ratios mean anything.
"""
import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few repeats and only batch 1 (a smoke run)")
    p.add_argument("--json", metavar="PATH", help="also write every measurement as JSON to PATH")
    p.add_argument("--cache", choices=("both", "warm", "cold"), default="both",
                   help="warm: weights stay in cache (hot loop); cold: caches evicted before every call")
    p.add_argument("--evict-mb", type=int, default=64, help="size of the eviction buffer (default 64 MB, 2x L3)")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="BLAS threads for the dense products (default 1: the Numba kernels use one core)")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # BLAS reads its thread count when NumPy is first imported
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.blas_threads)

import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from dkp.core.inference import LSTMStep  # noqa: E402
from dkp.core.lstm_fast import FastLSTMLayer  # noqa: E402
from dkp.core.weights import Dense, Kronecker  # noqa: E402
from dkp.bench.matrices import (ROUNDS, SHAPE, STEPS, VOCAB, Evictor, H, gate_matrices, machine,  # noqa: E402
                              measure)
from dkp.bench.records import TARGETS, fmt_bytes  # noqa: E402
from dkp.kernels import step as fused  # noqa: E402

# --- timing -----------------------------------------------------------------------------------

def repeats_for(quick, batch, cache, steps):
    if quick:
        return 10 if steps == 1 else ROUNDS
    if steps > 1:
        return 25 if batch == 1 else 10
    if cache == "warm":
        return 500 if batch == 1 else 100
    return 200 if batch == 1 else 60


def run(quick=False, caches=("warm", "cold"), evict_mb=64):
    rng = np.random.default_rng(0)
    methods = gate_matrices(rng)
    bias = rng.uniform(-0.05, 0.05, 4 * H).astype(np.float32)
    batches = (1,) if quick else (1, 20)
    evictor = Evictor(evict_mb)
    rows = []
    for batch in batches:
        xs = rng.standard_normal((STEPS, batch, H)).astype(np.float32)
        h0 = rng.uniform(-0.5, 0.5, (batch, H)).astype(np.float32)
        c0 = rng.standard_normal((batch, H)).astype(np.float32)
        out = (np.empty_like(h0), np.empty_like(h0))
        calls_1, calls_seq, paths = {}, {}, {}
        for mt in methods:
            layer = FastLSTMLayer(mt.W, bias, H, H)
            step = LSTMStep(layer)
            paths[mt.name] = ("fused kernel" if step.fused and batch <= step.max_fused_batch
                              else "gate product + Numba cell")
            calls_1[mt.name, "layer"] = lambda layer=layer: layer.forward(xs[:1], (h0, c0))
            calls_1[mt.name, "fused"] = lambda step=step: step(xs[0], (h0, c0), out)
            calls_seq[mt.name, "layer"] = lambda layer=layer: layer.forward(xs, (h0, c0))
            calls_seq[mt.name, "fused"] = lambda step=step: step.sequence(xs, (h0, c0))
        # The floor: the same code paths on a tiny layer (H = 4, KP 4x4 (x) 4x2 and dense), whose
        # weights are a few hundred bytes. Its time is call overhead: Python, the Numba dispatcher,
        # NumPy; in the cold mode also refetching that code and interpreter state from DRAM.
        tiny_x = rng.standard_normal((batch, 4)).astype(np.float32)
        tiny_out = (np.empty_like(tiny_x), np.empty_like(tiny_x))
        for name, W in (("floor: kp H=4", Kronecker.init((16, 8), ((4, 4), (4, 2)), 1, rng, 0.5, np.float32)),
                        ("floor: dense H=4", Dense.init((16, 8), rng, 0.5, np.float32))):
            layer = FastLSTMLayer(W, np.zeros(16, np.float32), 4, 4)
            step = LSTMStep(layer)
            calls_1[name, "layer"] = lambda layer=layer: layer.forward(tiny_x[None], (tiny_x, tiny_x))
            calls_1[name, "fused"] = lambda step=step: step(tiny_x, (tiny_x, tiny_x), tiny_out)
        for cache in caches:
            for steps, calls in ((1, calls_1), (STEPS, calls_seq)):
                if steps > 1 and cache == "cold":
                    continue  # a sequence re-reads the same weights: warm after its first step
                repeats = repeats_for(quick, batch, cache, steps)
                times = measure(calls, repeats, evictor if cache == "cold" else None)
                baseline = min(("layer", "fused"), key=lambda v: times["dense", v])   # dense's fastest path
                dense_t = times["dense", baseline]
                for name in ("floor: kp H=4", "floor: dense H=4"):
                    for variant in ("layer", "fused"):
                        if (name, variant) in times:
                            rows.append({"method": name, "variant": variant, "batch": batch, "steps": steps,
                                         "cache": cache, "floor": True, "seconds": times[name, variant],
                                         "seconds_per_step": times[name, variant]})
                for mt in methods:
                    for variant in ("layer", "fused"):
                        t = times[mt.name, variant]
                        flops = 2 * mt.macs * batch * steps
                        rows.append({
                            "method": mt.name, "variant": variant, "batch": batch, "steps": steps,
                            "cache": cache, "repeats": max(1, repeats // ROUNDS) * ROUNDS,
                            "seconds": t, "seconds_per_step": t / steps, "speedup": dense_t / t,
                            "baseline": f"dense {baseline}", "baseline_seconds": dense_t,
                            "flop_bound": mt.flop_bound, "macs_per_row": mt.macs,
                            "n_params": mt.W.n_params, "compression": SHAPE[0] * SHAPE[1] / mt.W.n_params,
                            "weight_bytes": mt.n_bytes, "max_rank": mt.max_rank,
                            "flops_per_weight_byte": 2 * mt.macs * batch / mt.n_bytes,
                            "gflops": flops / t / 1e9, "weight_gb_per_s": mt.n_bytes * steps / t / 1e9,
                            "path": paths[mt.name] if variant == "fused" else "FastLSTMLayer.forward"})
    return rows, methods


def cell_times():
    """The cell alone at batch 1: the layer's NumPy expressions against the Numba kernel."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((1, 4 * H)).astype(np.float32)
    c = rng.standard_normal((1, H)).astype(np.float32)
    t = measure({"numpy": lambda: fused.lstm_cell_ref(z, c), "numba": lambda: fused.lstm_cell(z, c)}, 500)
    return t


# --- reporting --------------------------------------------------------------------------------

def fmt_time(t):
    return f"{t * 1e6:.1f} us" if t < 1e-3 else f"{t * 1e3:.2f} ms"


def print_table(rows):
    sections = sorted({(r["steps"], r["batch"], r["cache"]) for r in rows}, key=lambda s: (s[0], s[1], s[2] != "warm"))
    for steps, batch, cache in sections:
        sel = [r for r in rows if (r["steps"], r["batch"], r["cache"]) == (steps, batch, cache)]
        what = "one step" if steps == 1 else f"{steps} steps, time per step"
        base = next(r for r in sel if not r.get("floor"))
        print(f"\nbatch {batch}, {what}, cache {cache}"
              + (" (weights evicted from every cache before each call)" if cache == "cold"
                 else " (hot loop: weights stay in cache)")
              + f"; x dense: over {base['baseline']}, dense's fastest path here")
        print(f"{'method':<38}{'params':>10}{'comp':>7}{'weights':>10}{'MAC/row':>10}{'max rk':>7}"
              f"{'FLOP/B':>7}{'bound':>7} |{'layer':>10}{'x dense':>8} |{'fused':>10}{'x dense':>8}"
              f"{'GFLOP/s':>8}{'GB/s':>6}")
        floors = {(r["method"], r["variant"]): r["seconds"] for r in sel if r.get("floor")}
        sel = [r for r in sel if not r.get("floor")]
        names = list(dict.fromkeys(r["method"] for r in sel))
        for name in names:
            lay = next(r for r in sel if r["method"] == name and r["variant"] == "layer")
            fus = next(r for r in sel if r["method"] == name and r["variant"] == "fused")
            print(f"{name:<38}{lay['n_params']:>10,}{lay['compression']:>6.1f}x{fmt_bytes(lay['weight_bytes']):>10}"
                  f"{lay['macs_per_row']:>10,}{lay['max_rank']:>7}{lay['flops_per_weight_byte']:>7.2f}"
                  f"{lay['flop_bound']:>6.1f}x |{fmt_time(lay['seconds_per_step']):>10}{lay['speedup']:>7.2f}x |"
                  f"{fmt_time(fus['seconds_per_step']):>10}{fus['speedup']:>7.2f}x{fus['gflops']:>8.1f}"
                  f"{fus['weight_gb_per_s']:>6.1f}")
        if floors:
            f = {k: fmt_time(v) for k, v in floors.items()}
            print(f"{'floor (same code, H=4 layer):':<38} kp: layer {f['floor: kp H=4', 'layer']}, fused "
                  f"{f['floor: kp H=4', 'fused']}; dense: layer {f['floor: dense H=4', 'layer']}, fused "
                  f"{f['floor: dense H=4', 'fused']}")


def targets(rows):
    """The project's batch-1, one-step targets (dkp.bench.records.TARGETS), on both code paths:
    (label, [(row, met)]) with met = the speed-up over dense's fastest path reaches the target."""
    one = [r for r in rows if r["batch"] == 1 and r["steps"] == 1 and not r.get("floor")]
    return [(label, [(r, r["speedup"] >= need) for r in one if pick(r)]) for label, need, pick in TARGETS]


def print_targets(rows):
    print("\nTargets (batch 1, one step, speed-up over dense's fastest path in the same cache mode):")
    for label, results in targets(rows):
        print(f"  {label}")
        for r, met in results:
            print(f"    {r['method']:<38} {r['compression']:5.1f}x  {r['cache']:<4} {r['variant']:<5} "
                  f"{r['speedup']:6.2f}x  (FLOP bound {r['flop_bound']:.1f}x)  {'MET' if met else 'not met'}")


def git_commit():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return sha + (" (uncommitted changes)" if dirty else "")
    except OSError:
        return None


def main(args):
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    caches = ("warm", "cold") if args.cache == "both" else (args.cache,)
    info = machine()
    model_bytes = 2 * SHAPE[0] * SHAPE[1] * 4 + VOCAB * H * 4
    print(f"one LSTM layer, H={H}, gate matrix {SHAPE[0]}x{SHAPE[1]}, float32; {info['cpu']}, {info['cores']} "
          f"cores, L3 {info.get('l3_cache', '?')}; BLAS threads {args.blas_threads}, Numba single-threaded; "
          f"load average {load0:.2f}")
    print(f"A step of the whole medium model reads the two gate matrices and the softmax, "
          f"{model_bytes / 2**20:.0f} MB (+ the embedding, {VOCAB * H * 4 / 2**20:.0f} MB, of which only the "
          f"looked-up rows): more than L3, so 'cold' (weights from DRAM) is the realistic mode at batch 1; "
          f"'warm' keeps the weights in cache. Eviction buffer {args.evict_mb} MB. Times are medians of "
          f"noisy measurements on a shared machine.")
    rows, _ = run(args.quick, caches, args.evict_mb)
    print_table(rows)
    cells = cell_times()
    print(f"\nLSTM cell alone, batch 1: NumPy (the layer's expressions) {fmt_time(cells['numpy'])}, "
          f"Numba kernel {fmt_time(cells['numba'])}")
    print_targets(rows)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average after: {load1:.2f}")
    if args.json:
        record = {
            "command": " ".join(["python"] + sys.argv), "argv": sys.argv, "git": git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": info,
            "shape": SHAPE, "hidden": H, "dtype": "float32", "blas_threads": args.blas_threads,
            "cache_modes": list(caches), "evict_mb": args.evict_mb, "rounds": ROUNDS, "quick": args.quick,
            "load_average": {"before": load0, "after": load1},
            "cell_seconds": cells,
            "targets": [{"target": label, "results": [{"method": r["method"], "cache": r["cache"],
                                                       "variant": r["variant"], "speedup": r["speedup"],
                                                       "met": met} for r, met in res]}
                        for label, res in targets(rows)],
            "rows": rows}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
