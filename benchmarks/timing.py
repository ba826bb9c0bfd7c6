"""What the PyTorch-referenced benchmark scripts share (train_speed.py, transformer_speed.py,
lstm_speed.py, softmax_speed.py): alternating rounds, the options, the thread count, and the sweep
over (config, threads) in child processes with its record. It imports neither NumPy nor dkp at the
top (save_sweep imports dkp when it runs), so a script can read its options and set the BLAS's
thread count before NumPy loads it."""
import json
import statistics
import subprocess
import sys

SWEEP = [("small", 1), ("small", 2), ("medium", 1), ("medium", 2)]   # (config, threads) of --sweep


def optional_torch(threads=0):
    """PyTorch, if importable, with `threads` intra-op threads (0: its own default); None without it.
    A benchmark's reference only: PyTorch is never a dependency of dkp."""
    try:
        import torch
    except ImportError:
        print("torch is not installed: timing dkp alone")
        return None
    if threads:
        torch.set_num_threads(threads)
    return torch


def alternating_rounds(rounds, timers):
    """Call every timer of {name: () -> a measurement, or {part: measurement}} in turn, `rounds` times,
    so that a change in the machine's load hits all alike: one {name or part: measurement} per round."""
    runs = []
    for _ in range(rounds):
        r = {}
        for name, timer in timers.items():
            t = timer()
            r.update(t if isinstance(t, dict) else {name: t})
        runs.append(r)
    return runs


def alternating_medians(rounds, timers):
    """The median of each measurement of `alternating_rounds`: {name or part: measurement}."""
    runs = alternating_rounds(rounds, timers)
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def timing_arguments(parser, unit):
    """The options every PyTorch-referenced benchmark script shares: --config, --threads, --rounds,
    --reps (`unit`: what one repetition times, for the help)."""
    parser.add_argument("--config", default="small", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--threads", type=int, default=0,
                        help="BLAS threads for dkp and intra-op threads for torch (default: the libraries' own)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians (default 5)")
    parser.add_argument("--reps", type=int, default=20, help=f"{unit} per round (default 20)")


def sweep_rows(script, options, sweep=SWEEP):
    """Run `script` once per (config, threads) of `sweep`, each in a child process of its own (the
    BLAS reads its thread count when it loads), with `options` and `--record -`; the JSON record
    each child prints last, in order."""
    rows = []
    for config, threads in sweep:
        cmd = [sys.executable, str(script), "--config", config, "--threads", str(threads), *options, "--record", "-"]
        print(f"{config}, {threads} thread(s) ...", flush=True)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def sweep_arguments(parser, what):
    """The options of a script that sweeps (config, threads) in child processes: --sweep (`what`:
    its help), --json, and the hidden --record each child prints its row with."""
    import argparse
    parser.add_argument("--sweep", action="store_true", help=what)
    parser.add_argument("--json", help="with --sweep: write the measurements to this JSON file")
    parser.add_argument("--record", help=argparse.SUPPRESS)   # "-": print one JSON line (what --sweep reads)


def check_sweep(parser, args):
    """--json without --sweep would write nothing: an error."""
    if args.json and not args.sweep:
        parser.error("--json needs --sweep")


def set_blas_threads(threads):
    """Give the BLAS `threads` threads (0: its default); before NumPy loads it."""
    import os
    if threads:
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(threads)


def save_sweep(args, benchmark, rows, tables, **fields):
    """A sweep's record, {"benchmark", **fields, "machine", "rows", the command and commit}: each of
    `tables` (a function of the record, returning text) printed, and the record written to args.json
    when given. Returns the record."""
    from dkp.bench.matrices import machine
    from dkp.core import io
    record = {"benchmark": benchmark, **fields, "machine": machine(), "rows": rows, **io.provenance()}
    for table in tables:
        print()
        print(table(record))
    if args.json:
        io.save_json(args.json, record)
        print(f"wrote {args.json}")
    return record
