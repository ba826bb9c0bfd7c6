"""The softmax layer alone: dkp's decoder and softmax cross-entropy, forward and backward, against
PyTorch's nn.Linear + cross_entropy on the same shapes, timed in the same run.

    python benchmarks/softmax_speed.py [--config small] [--threads N] [--rounds 5] [--reps 20]
    python benchmarks/softmax_speed.py --sweep [--json data/results/softmax_speed.json]

One timed repetition is what a training step does after the last LSTM layer: logits = h @ W.T + b
(dkp: the decoder's `forward`), the mean cross-entropy (`dkp.core.model.softmax_cross_entropy`),
its gradient in place (`softmax_cross_entropy_grad_`), the decoder's `backward` (the gradients of h
and W) and the bias's gradient; PyTorch does the same with autograd. Both in float32 on (batch *
bptt, hidden) inputs and a 10,000-word vocabulary. dkp and PyTorch alternate for --rounds rounds and
the medians are printed, with dkp's time split into its products and its softmax. The last line is
`dkp / torch: R` (above 1: dkp is faster). PyTorch is never a dependency of dkp; without it, only
dkp's times are printed. --sweep runs small and medium with 1 and 2 threads, each in a process of
its own (the BLAS reads its thread count when it loads), prints one table and, with --json, writes
every measurement with the machine and the command.
"""
import argparse
import json
import time

from timing import alternating_medians, check_sweep, optional_torch, save_sweep, set_blas_threads, sweep_arguments, sweep_rows, timing_arguments


def dkp_step(decoder, b, h, y):
    """One forward and backward of the softmax layer: (seconds in products, seconds in softmax)."""
    from dkp.core.model import softmax_cross_entropy, softmax_cross_entropy_grad_
    N = len(y)
    t0 = time.perf_counter()
    logits, cache = decoder.forward(h)                       # (N, V)
    logits += b
    t1 = time.perf_counter()
    e, sums, logp_y = softmax_cross_entropy(logits, y)
    float(-logp_y.mean())
    dlogits = softmax_cross_entropy_grad_(e, sums, y, 1.0 / N, 1.0 / N)
    db = dlogits.sum(axis=0)                                 # (V,)
    t2 = time.perf_counter()
    decoder.backward(dlogits, cache)                         # dh (N, H), dW (V, H)
    t3 = time.perf_counter()
    del db
    return (t1 - t0) + (t3 - t2), t2 - t1


def time_dkp(h, y, V, reps):
    import numpy as np

    from dkp.core.weights import Dense
    rng = np.random.default_rng(0)
    decoder = Dense.init((V, h.shape[1]), rng, 0.1)
    b = rng.uniform(-0.1, 0.1, V).astype(np.float32)
    dkp_step(decoder, b, h, y)                               # warm-up
    parts = [dkp_step(decoder, b, h, y) for _ in range(reps)]
    products, softmax = (sum(p[i] for p in parts) / reps for i in (0, 1))
    return products + softmax, products, softmax


def time_torch(h, y, V, reps):
    import torch
    lin = torch.nn.Linear(h.shape[1], V)
    x = torch.from_numpy(h).requires_grad_(True)
    t = torch.from_numpy(y)

    def step():
        lin.zero_grad(set_to_none=True)
        x.grad = None
        loss = torch.nn.functional.cross_entropy(lin(x), t)
        float(loss.detach())
        loss.backward()
    step()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - t0) / reps


def sweep(args):
    """Every (config, threads) of timing.SWEEP in a child process of its own; a table, and --json."""
    rows = sweep_rows(__file__, ["--rounds", str(args.rounds), "--reps", str(args.reps)])
    from dkp.bench.records import softmax_speed_markdown
    save_sweep(args, "softmax_speed", rows, [softmax_speed_markdown], rounds=args.rounds, reps=args.reps)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    timing_arguments(p, "steps")
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
    V, N, H = 10000, config.batch * config.bptt, config.hidden
    rng = np.random.default_rng(1)
    h = rng.standard_normal((N, H)).astype(np.float32)      # (N, H) the last layer's output
    y = rng.integers(0, V, N)                                # (N,) targets
    torch = optional_torch(args.threads)

    def dkp_round():
        total, products, softmax = time_dkp(h, y, V, args.reps)
        return {"dkp": total, "products": products, "softmax": softmax}
    timers = {"dkp": dkp_round}
    if torch is not None:
        timers["torch"] = lambda: time_torch(h, y, V, args.reps)
    med = alternating_medians(args.rounds, timers)
    print(f"config {args.config}: (N, H) = ({N}, {H}) rows into {V} words, threads {args.threads or 'default'}, "
          f"medians of {args.rounds} rounds x {args.reps} steps")
    print(f"dkp:   {med['dkp'] * 1e3:7.2f} ms per step (products {med['products'] * 1e3:.2f} ms, "
          f"softmax {med['softmax'] * 1e3:.2f} ms, {med['softmax'] / med['dkp']:.0%})")
    if torch is not None:
        print(f"torch: {med['torch'] * 1e3:7.2f} ms per step ({torch.__version__}, {torch.get_num_threads()} threads)")
        print(f"dkp / torch: {med['torch'] / med['dkp']:.2f}")
    if args.record == "-":
        print(json.dumps({"config": args.config, "threads": args.threads, "torch": None, **med,
                          "torch_version": None if torch is None else torch.__version__}))


if __name__ == "__main__":
    main()
