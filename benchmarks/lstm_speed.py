"""One LSTM layer alone: dkp's (the fast path of dkp/core/lstm_fast.py for a dense gate matrix)
against PyTorch's one-layer nn.LSTM on the same shapes, forward and backward over one window,
timed in the same run.

    python benchmarks/lstm_speed.py [--config small] [--threads N] [--rounds 5] [--reps 20] [--products]
    python benchmarks/lstm_speed.py --sweep --products [--json data/results/lstm_speed.json]

A repetition runs the layer over a (bptt, batch, hidden) float32 window from a zero state and back
(BPTT with the gradient of sum(h)), dkp with `FastLSTMLayer.forward` / `backward`, PyTorch with
autograd. dkp and PyTorch alternate for --rounds rounds and the medians are printed, with the
layer's arithmetic (3 products of the window by the (4H, 2H) gate matrix: forward, input and
weight gradients) as a rate. The last line is `dkp / torch: R` (above 1: dkp is faster). PyTorch is
never a dependency of dkp; without it, only dkp's time is printed. With --products, the layer's
matrix products alone are timed too, each shape in NumPy (dkp's BLAS) and in PyTorch, as rates.
--sweep runs small and medium with 1 and with 2 threads, each in a process of its own (the BLAS reads
its thread count when it loads), prints one table and, with --json, writes every measurement with
the machine, the command and the commit.
"""
import argparse
import json
import time

from timing import alternating_medians, check_sweep, optional_torch, save_sweep, set_blas_threads, sweep_arguments, sweep_rows, timing_arguments



def time_dkp(x, reps):
    import numpy as np

    from dkp.core.lstm_fast import FastLSTMLayer
    from dkp.core.weights import Dense
    T, B, H = x.shape
    rng = np.random.default_rng(0)
    layer = FastLSTMLayer(Dense.init((4 * H, 2 * H), rng, 0.1), rng.uniform(-0.1, 0.1, 4 * H).astype(np.float32), H, H)
    state = layer.zero_state(B, np.float32)
    dh = np.ones_like(x)                                     # (T, B, H) d sum(h) / dh

    def step():
        hs, _, cache = layer.forward(x, state)
        layer.backward(dh, cache)
    step()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - t0) / reps


def time_torch(x, reps):
    import torch
    T, B, H = x.shape
    lstm = torch.nn.LSTM(H, H, 1)
    xt = torch.from_numpy(x).requires_grad_(True)     # the input gradient too, as dkp computes it

    def step():
        lstm.zero_grad(set_to_none=True)
        xt.grad = None
        out, _ = lstm(xt)
        out.sum().backward()
    step()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - t0) / reps


def product_shapes(T, B, H):
    """(name, M, K, N) of the products of one window of the fast path (dkp/core/lstm_fast.py)."""
    return [("input projection  (TB, H) @ (H, 4H)", T * B, H, 4 * H),
            ("recurrent step    (B, H) @ (H, 4H)", B, H, 4 * H),
            ("recurrent grad    (B, 4H) @ (4H, H)", B, 4 * H, H),
            ("input grad        (TB, 4H) @ (4H, H)", T * B, 4 * H, H),
            ("weight grad       (4H, TB) @ (TB, 2H)", 4 * H, T * B, 2 * H)]


def time_products(T, B, H, torch, reps):
    """{name: (NumPy GFLOP/s, PyTorch GFLOP/s or None)} of each product of `product_shapes`."""
    import numpy as np
    rng = np.random.default_rng(2)
    rates = {}
    for name, M, K, N in product_shapes(T, B, H):
        a, b = (rng.standard_normal(s).astype(np.float32) for s in ((M, K), (K, N)))
        out = np.empty((M, N), np.float32)
        calls = [lambda: np.matmul(a, b, out=out)]
        if torch is not None:
            ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
            calls.append(lambda: torch.mm(ta, tb, out=tout))
        rate = []
        for call in calls:
            call()
            t0 = time.perf_counter()
            for _ in range(reps):
                call()
            rate.append(2 * M * K * N * reps / (time.perf_counter() - t0) / 1e9)
        rates[name] = (rate[0], rate[1] if torch is not None else None)
    return rates


def sweep(args):
    """Every (config, threads) of timing.SWEEP in a child process of its own; a table, and --json."""
    options = ["--rounds", str(args.rounds), "--reps", str(args.reps)] + (["--products"] if args.products else [])
    rows = sweep_rows(__file__, options)
    from dkp.bench import records
    tables = [records.lstm_speed_markdown] + ([records.lstm_products_markdown] if args.products else [])
    save_sweep(args, "lstm_speed", rows, tables, rounds=args.rounds, reps=args.reps, products=args.products)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    timing_arguments(p, "windows")
    p.add_argument("--products", action="store_true", help="also time the layer's matrix products alone")
    sweep_arguments(p, "small and medium, 1 and 2 threads, one table")
    args = p.parse_args()
    if args.rounds < 1 or args.reps < 1:
        p.error(f"--rounds and --reps must be >= 1, got {args.rounds} and {args.reps}")
    check_sweep(p, args)
    if args.sweep:
        return sweep(args)
    set_blas_threads(args.threads)                    # before NumPy loads OpenBLAS
    import numpy as np

    from dkp.training.configs import get_config
    config = get_config(args.config)
    T, B, H = config.bptt, config.batch, config.hidden
    x = np.random.default_rng(1).standard_normal((T, B, H)).astype(np.float32)   # (T, B, H)
    torch = optional_torch(args.threads)
    timers = {"dkp": lambda: time_dkp(x, args.reps)}
    if torch is not None:
        timers["torch"] = lambda: time_torch(x, args.reps)
    med = alternating_medians(args.rounds, timers)
    from dkp.bench.records import lstm_window_flop
    flop = lstm_window_flop(T, B, H)
    print(f"config {args.config}: one layer, (T, B, H) = ({T}, {B}, {H}), threads {args.threads or 'default'}, "
          f"medians of {args.rounds} rounds x {args.reps} windows")
    print(f"dkp:   {med['dkp'] * 1e3:7.2f} ms per window ({flop / med['dkp'] / 1e9:.1f} GFLOP/s of its products)")
    if torch is not None:
        print(f"torch: {med['torch'] * 1e3:7.2f} ms per window ({flop / med['torch'] / 1e9:.1f} GFLOP/s; "
              f"{torch.__version__}, {torch.get_num_threads()} threads)")
        print(f"dkp / torch: {med['torch'] / med['dkp']:.2f}")
    products = {}
    if args.products:
        print("the layer's products alone, GFLOP/s (NumPy's BLAS, which dkp uses; PyTorch's):")
        products = time_products(T, B, H, torch, 10 * args.reps)
        for name, (np_rate, torch_rate) in products.items():
            print(f"  {name}: {np_rate:6.1f}  " + (f"{torch_rate:6.1f}" if torch_rate else "-"))
    if args.record == "-":
        print(json.dumps({"config": args.config, "threads": args.threads, "shape": [T, B, H], "torch": None, **med,
                          "torch_version": None if torch is None else torch.__version__,
                          "products_gflops": {name: {"numpy": a, "torch": b} for name, (a, b) in products.items()}}))


if __name__ == "__main__":
    main()
