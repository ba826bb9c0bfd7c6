"""Is a run reproducible bit for bit from its seed, across the project's history? A short run of the
small LSTM (`python -m dkp train --config small --seed 0 --epochs 1 --train-tokens N`) trained here
twice, by the LSTM's fast training path (dkp/core/lstm_fast.py, what `train` uses) and by its
reference path (dkp/core/lstm.py, `layer.fast = False`), each compared, number for number, with the
same run trained by another commit (its metrics.json, --against, and with --against-checkpoint its
trained model, parameter by parameter).

    python benchmarks/reproducibility.py --against data/results/small/short-run-first-commit.json \
        --against-checkpoint runs/short-run/checkpoint.npz --json data/results/small/reproducibility.json

The two paths compute the same products in another order (the fast one multiplies a whole window's
inputs at once): equal to 1e-10 in float64 (tests/test_lstm.py), rounded differently in float32,
which training then amplifies.
"""
import argparse
import os
import platform

import numpy as np

from dkp.core import io
from dkp.training.checkpoint import load_model_arrays
from dkp.training.configs import get_config
from dkp.training.loop import Trainer, build_model

FIELDS = ("final_valid_ppl", "test_ppl", "valid_ppl", "train_ppl")


def short_run(tokens, seed, fast, corpus=None):
    """({field: value}, the trained model) of the short run with the fast path on or off."""
    config = get_config("small").with_(epochs=1, train_tokens=tokens)
    trainer = Trainer(config, seed=seed, corpus=corpus, progress=False)
    for layer in trainer.model.layers:
        layer.fast = fast
    metrics = trainer.run()
    return {k: metrics[k] for k in FIELDS}, trainer.model


def compare(mine, theirs, model=None, their_model=None):
    """Whether every recorded number of `mine` equals `theirs` exactly (bit for bit), the largest
    relative difference among them, and with both models whether every parameter is the same bit
    for bit (and the largest absolute difference)."""
    pairs = [(a, b) for k in FIELDS for a, b in zip(np.atleast_1d(mine[k]), np.atleast_1d(theirs[k]))]
    out = {"numbers_bit_for_bit": all(a == b for a, b in pairs),
           "largest_relative_difference": max(abs(a / b - 1) for a, b in pairs)}
    if their_model is not None:
        diffs = [float(np.abs(p - their_model.params[name]).max()) for name, p in model.params.items()]
        out.update(params_bit_for_bit=max(diffs) == 0.0, largest_param_difference=max(diffs))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", required=True, help="metrics.json of the same short run trained by another commit")
    p.add_argument("--against-checkpoint", help="that run's checkpoint.npz: compare the trained parameters too")
    p.add_argument("--json", help="write the record here (atomically)")
    args = p.parse_args(argv)
    theirs = io.load_json(args.against)
    config = theirs.get("config") if isinstance(theirs, dict) else None
    if not isinstance(config, dict) or config.get("name") != "small" or config.get("epochs") != 1 \
            or not config.get("train_tokens") or "seed" not in theirs:
        raise SystemExit(f"--against {args.against!r} must be a one-epoch run of the small config on a slice "
                         f"(--epochs 1 --train-tokens N), its metrics.json as `train` writes it")
    tokens, seed = config["train_tokens"], theirs["seed"]
    their_model = None
    if args.against_checkpoint:
        arrays, _ = io.load_npz(args.against_checkpoint)
        vocab_size = next(v.shape[0] for k, v in arrays.items() if k in ("param.embed", "param.embed.W"))
        their_model = build_model(get_config("small"), vocab_size, seed)
        load_model_arrays(their_model, arrays, args.against_checkpoint)
    runs = {name: short_run(tokens, seed, fast) for name, fast in (("fast", True), ("reference", False))}
    record = {"against": {"path": args.against, "commit": theirs.get("commit"), "command": theirs.get("command"),
                          **{k: theirs[k] for k in FIELDS}},
              "runs": {name: {**run, **compare(run, theirs, model, their_model)} for name, (run, model) in runs.items()},
              "tokens": tokens, "seed": seed, "machine": platform.machine(), "processor": platform.processor(),
              **io.provenance()}
    print(f"against commit {str(theirs.get('commit'))[:10]}: valid {theirs['final_valid_ppl']:.2f}, "
          f"test {theirs['test_ppl']:.2f}")
    for name, run in record["runs"].items():
        params = ("" if their_model is None else "; parameters " + ("the same bit for bit" if run["params_bit_for_bit"]
                  else f"differ (largest {run['largest_param_difference']:.2e})"))
        print(f"{name:<10} path: valid {run['final_valid_ppl']:.2f}, test {run['test_ppl']:.2f}; recorded numbers "
              f"{'the same bit for bit' if run['numbers_bit_for_bit'] else 'differ'} (largest relative difference "
              f"{run['largest_relative_difference']:.1e}){params}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        io.save_json(args.json, record)
        print(f"wrote {args.json}")
    return record


if __name__ == "__main__":
    main()
