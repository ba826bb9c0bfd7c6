"""Training speed of dkp's NumPy LSTM language model on a Zaremba config, in words per second.

    python benchmarks/train_speed.py --config small [--steps 60] [--torch] [--reference] [--phases]
    python benchmarks/train_speed.py --config medium --structure kp --compression 20 --doping 0.01
    python benchmarks/train_speed.py --sweep --torch [--rounds 3] [--json data/results/train_speed.json]

Trains for a fixed number of steps (forward + BPTT + clipping + SGD update, batch 20, the config's
bptt) on the start of PTB's train split. With --torch, and PyTorch importable (it is never a
dependency of dkp), the same model in torch.nn.LSTM is timed in the same run and the ratio printed.
With --structure, the compressed model is timed (a doped or pruned one at its final density, as it
trains after its anneal) and the dense model of the same config beside it, and the ratio printed.
With --reference, the LSTM's reference path (dkp/core/lstm.py, which the fast path of
dkp/core/lstm_fast.py replaces for dense and pruned matrices) is timed too. The last line is
`words/s: N` for dkp's model (the compressed one, with --structure).

With --rounds R, dkp and PyTorch are timed R times each, alternating, and the medians reported, so
a change in the machine's load hits both alike. --sweep runs small and medium with 1 and with 2
threads (each in a process of its own: the BLAS reads its thread count when it loads), prints one
table and, with --json, writes every measurement with the machine and the command.

For the dense model it also prints the step's arithmetic against the machine: the FLOPs of one
training step per word (`step_flops_per_word`), the float32 matrix-product rate NumPy's BLAS reaches
on this machine with the same threads (`matmul_gflops`), the words/s that rate would give if the step
were nothing but its products, and the share of that limit dkp and PyTorch reach.
"""
import argparse
import json
import statistics
import time

from timing import alternating_rounds, check_sweep, optional_torch, save_sweep, set_blas_threads, sweep_arguments, sweep_rows


class PhaseTimer:
    """Wall time spent inside chosen methods of live objects (wrapped on the instance, so the
    training loop itself is unchanged): {phase: seconds}."""

    def __init__(self):
        self.seconds = {}

    def wrap(self, obj, method, phase):
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t
        setattr(obj, method, timed)


def time_phases(trainer):
    """Wrap the trainer's LSTM layers, decoder and optimizer so that one epoch records the time of
    each: "lstm" (every layer's forward and backward), "decoder" (the softmax layer's products,
    forward and backward), "update" (the optimizer step). The rest of a step is the softmax itself,
    the embedding, dropout and the clip."""
    timer = PhaseTimer()
    for layer in trainer.model.layers:
        timer.wrap(layer, "forward", "lstm")
        timer.wrap(layer, "backward", "lstm")
    timer.wrap(trainer.model.decoder, "forward", "decoder")
    timer.wrap(trainer.model.decoder, "backward", "decoder")
    timer.wrap(trainer.optimizer, "step", "update")
    return timer


VOCAB = 10000   # PTB's vocabulary: the decoder's rows


def step_flops_per_word(config, vocab=VOCAB):
    """FLOPs of one training step per word of the dense model: its products, 2 FLOPs per
    multiply-add. Each layer's (4H, 2H) gate matrix and the (V, H) decoder are used three times per
    word: forward, the input's gradient and the weight's gradient. The element-wise work (the gates,
    the softmax and its gradient, dropout, the clip, the update) is left out: a handful of operations
    per logit, the exponential among them, against the 6H FLOPs per logit of the decoder's products
    (1,200 on small)."""
    H = config.hidden
    return 3 * 2 * (config.layers * (4 * H) * (2 * H) + vocab * H)


def matmul_gflops(n=2048, reps=10):
    """The float32 matrix-product rate (GFLOP/s) of NumPy's BLAS on this machine, with the thread
    count it loaded with: the best of `reps` products of two n x n matrices. Measured before any
    other timing of the process (PyTorch's idle threads, once started, would share the cores)."""
    import numpy as np
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = a @ b                     # warm-up: the BLAS starts its threads
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def dkp_speed(config, steps, warmup=3, fast=True, phases=None):
    """Words/s of the real training loop (Trainer.train_epoch) over exactly `steps` windows; with
    fast=False every LSTM layer takes the reference path of dkp/core/lstm.py. `phases` (a dict)
    receives the share of the epoch's time in each phase of `time_phases`."""
    from dkp.core.data import load_corpus
    from dkp.training.loop import Trainer
    corpus = load_corpus()
    n_tokens = lambda k: k * config.batch * config.bptt + config.batch  # noqa: E731 - k windows
    Trainer(config.with_(train_tokens=n_tokens(warmup)), corpus=corpus, progress=False).train_epoch()
    trainer = Trainer(config.with_(train_tokens=n_tokens(steps)), corpus=corpus, progress=False)
    annealer = trainer.annealer
    if annealer is not None:   # time the model as it trains after its anneal: S (or W) sparse
        annealer.apply(trainer.model, annealer.end, trainer.optimizer)
    for layer in trainer.model.layers:
        layer.fast = fast
    timer = time_phases(trainer) if phases is not None else None
    t = time.perf_counter()
    _, wps, _, _ = trainer.train_epoch()
    if timer is not None:
        total = time.perf_counter() - t
        phases.update({k: v / total for k, v in timer.seconds.items()})
        phases["rest (softmax, embedding, dropout, clip)"] = 1.0 - sum(timer.seconds.values()) / total
    return wps


def torch_speed(torch, config, steps, warmup=3):
    """Words/s of the same model in PyTorch (`torch`: the module, its threads already set)."""
    from dkp.core.data import batchify, bptt_windows, load_corpus
    V, H, T, B = VOCAB, config.hidden, config.bptt, config.batch
    torch.manual_seed(0)
    emb, lstm, dec = torch.nn.Embedding(V, H), torch.nn.LSTM(H, H, config.layers), torch.nn.Linear(H, V)
    drop = torch.nn.Dropout(config.dropout)
    params = [*emb.parameters(), *lstm.parameters(), *dec.parameters()]
    opt = torch.optim.SGD(params, lr=1.0)
    stream = torch.from_numpy(batchify(load_corpus().train, B))
    windows = list(bptt_windows(stream, T))
    state = None

    def step(x, y):
        nonlocal state
        opt.zero_grad()
        out, state = lstm(drop(emb(x)), state)
        state = tuple(s.detach() for s in state)
        loss = torch.nn.functional.cross_entropy(dec(drop(out)).reshape(-1, V), y.reshape(-1)) * T
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.clip)
        opt.step()
    for x, y in windows[:warmup]:
        step(x, y)
    t = time.perf_counter()
    for x, y in windows[warmup:warmup + steps]:
        step(x, y)
    return steps * B * T / (time.perf_counter() - t)


def measure(args, config):
    """{"dkp": words/s, "torch": words/s or None, "phases": {...} or None, "rounds": [...], ...}, the
    medians over args.rounds alternating rounds, and for the dense model "flops_per_word" and
    "matmul_gflops" (`step_flops_per_word`, `matmul_gflops`; None for a compressed one)."""
    dense = config.structure == "dense" and config.vocab_structure == "dense"
    rate = matmul_gflops() if dense else None
    shares = None
    if args.phases:   # a separate epoch, so that the wrapping costs the timed ones nothing
        shares = {}
        dkp_speed(config, args.steps, phases=shares)
    torch = optional_torch(args.threads) if args.torch else None
    timers = {"dkp": lambda: dkp_speed(config, args.steps)}
    if torch is not None:
        timers["torch"] = lambda: torch_speed(torch, config, args.steps)
    rounds = alternating_rounds(args.rounds, timers)
    med = lambda k: statistics.median(r[k] for r in rounds) if k in rounds[0] else None  # noqa: E731
    return {"dkp": med("dkp"), "torch": med("torch"), "phases": shares, "rounds": rounds,
            "torch_version": None if torch is None else torch.__version__,
            "torch_threads": None if torch is None else torch.get_num_threads(),
            "flops_per_word": step_flops_per_word(config) if dense else None,
            "matmul_gflops": rate}


def sweep(args):
    """Every (config, threads) of timing.SWEEP in a child process of its own; a table, and --json."""
    rows = sweep_rows(__file__, ["--steps", str(args.steps), "--rounds", str(args.rounds), "--phases"]
                      + (["--torch"] if args.torch else []))
    from dkp.bench.records import train_speed_markdown
    save_sweep(args, "train_speed", rows, [train_speed_markdown], steps=args.steps, rounds=args.rounds)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="small", choices=["tiny", "small", "medium", "large"])
    p.add_argument("--steps", type=int, default=60, help="timed training steps (default 60)")
    p.add_argument("--torch", action="store_true", help="also time torch.nn.LSTM, if installed")
    p.add_argument("--threads", type=int, default=0,
                   help="BLAS threads for dkp and intra-op threads for torch (default: the libraries' own)")
    p.add_argument("--structure", default="dense", choices=["dense", "kp", "lmf", "hmd", "prune"],
                   help="time this compressed model, and dense beside it (default dense)")
    p.add_argument("--compression", type=float, default=20.0, help="with --structure (default 20)")
    p.add_argument("--phases", action="store_true",
                   help="also print the share of a training epoch in the LSTM, the decoder's products, the update "
                        "and the rest (the softmax itself, the embedding, dropout, the clip)")
    p.add_argument("--reference", action="store_true",
                   help="also time the LSTM's reference path (no fast path), and print the ratio")
    p.add_argument("--doping", type=float, default=0.0, help="final density of S, with --structure kp|lmf|hmd")
    p.add_argument("--rounds", type=int, default=1, help="alternating timings of dkp and torch; medians (default 1)")
    sweep_arguments(p, "small and medium, 1 and 2 threads, one table")
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    check_sweep(p, args)
    if args.sweep:
        return sweep(args)
    set_blas_threads(args.threads)                    # before NumPy loads OpenBLAS
    from dkp.training.configs import get_config
    config = get_config(args.config)
    print(f"config {args.config}: {config.layers} x {config.hidden}, batch {config.batch}, bptt {config.bptt}, "
          f"{args.steps} steps")
    if args.structure != "dense":
        dense_wps = dkp_speed(config, args.steps)
        print(f"dense words/s: {dense_wps:.0f}")
        config = config.with_(structure=args.structure, compression=args.compression, doping=args.doping)
        print(f"{args.structure} at {args.compression:g}x" + (f", S at density {args.doping:g}" if args.doping else ""))
    m = measure(args, config)
    wps = m["dkp"]
    if m["phases"]:
        print("share of a training epoch: " + ", ".join(f"{k} {v:.0%}" for k, v in m["phases"].items()))
    if args.reference:
        ref = dkp_speed(config, args.steps, fast=False)
        print(f"reference path (dkp/core/lstm.py) words/s: {ref:.0f};  fast path / reference: {wps / ref:.2f}x")
    if args.structure != "dense":
        print(f"compressed / dense: {wps / dense_wps:.2f}x")
    from dkp.bench.records import fmt_ratio, matmul_limit, paired_ratio
    if m["torch"]:
        print(f"torch {m['torch_version']} nn.LSTM words/s: {m['torch']:.0f}  (threads: {m['torch_threads']})")
        print(f"dkp / torch: {fmt_ratio(paired_ratio(m))}  (median and range of the rounds' ratios)")
    if m["flops_per_word"]:
        limit, share = matmul_limit(m)
        print(f"arithmetic: {m['flops_per_word'] / 1e6:.1f} MFLOP per word; float32 matmul {m['matmul_gflops']:.0f} "
              f"GFLOP/s here -> at most {limit:,.0f} words/s; dkp reaches {share['dkp']:.0%} of it"
              + (f", torch {share['torch']:.0%}" if share["torch"] else ""))
    print(f"words/s: {wps:.0f}")
    if args.record == "-":
        print(json.dumps({"config": args.config, "threads": args.threads, **m}))


if __name__ == "__main__":
    main()
