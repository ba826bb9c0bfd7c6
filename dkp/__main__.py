"""The command line: python -m dkp COMMAND ...  (python -m dkp COMMAND --help for each)

    train       train a language model on the Penn Treebank (a named config, any structure)
    eval        the perplexity of a saved checkpoint
    experiment  run a named experiment (dkp.study.catalog) over seeds and write its JSON
    report      tables and verdicts from experiment JSON (the course's, or the search's folder)
    plot        draw a figure from an experiment's JSON into a PNG
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _train(args):
    from dkp.training.configs import get_config
    from dkp.training.flags import apply, overrides
    from dkp.training.loop import train
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive number of BLAS threads, got {args.threads}")
    config = apply(get_config(args.config), overrides(args))
    _refuse_to_overwrite(args)
    metrics = train(config, seed=args.seed, out=args.out, resume=args.resume, progress=not args.quiet)
    print(f"final: valid ppl {metrics['final_valid_ppl']:.2f}  test ppl {metrics['test_ppl']:.2f}  "
          f"({metrics['mean_words_per_sec']:.0f} words/s)" if metrics["epochs"] else "nothing to train")
    print(f"wrote {os.path.join(args.out, 'metrics.json')}")


def _refuse_to_overwrite(args):
    """A run never replaces another run's checkpoint or metrics unless told to: --resume continues
    it, --overwrite replaces it, another --out keeps both."""
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: --resume continues the run in --out, "
                         "--overwrite replaces it")
    if args.resume:
        return
    found = [name for name in ("checkpoint.npz", "metrics.json") if os.path.exists(os.path.join(args.out, name))]
    if found and not args.overwrite:
        raise ValueError(f"--out {args.out!r} holds a run already ({', '.join(found)}): pass --resume to continue "
                         f"it, --overwrite to replace it, or another --out to keep both")


def _eval(args):
    from dkp.core import io
    from dkp.core.data import load_corpus
    from dkp.training.checkpoint import load_checkpoint
    from dkp.training.configs import Config
    from dkp.training.evaluate import evaluate
    from dkp.training.loop import Trainer
    arrays, meta = io.load_npz(args.checkpoint)
    config = Config.from_dict(meta["config"])
    corpus = load_corpus(level=config.level)
    trainer = Trainer(config, seed=meta["seed"], corpus=corpus, progress=False)
    # the model as it was, after a dense warm-up's switch too
    load_checkpoint(trainer, args.checkpoint, loaded=(arrays, meta))
    model = trainer.model
    result = {split: evaluate(model, getattr(corpus, split), config.eval_batch, config.bptt)
              for split in args.splits}
    print(json.dumps({"checkpoint": args.checkpoint, "epoch": meta["epoch"],
                      **{f"{k}_ppl": v for k, v in result.items()}}, indent=2))


def _experiment(args):
    from dkp.study.catalog import default_out
    from dkp.study.runner import run_experiment
    out = args.out or default_out(args.name)
    result = run_experiment(args.name, seeds=args.seeds, quick_mode=args.quick, scale=args.scale, out=out,
                            jobs=args.jobs, progress=not args.quiet, only=args.arms, scheduler=args.scheduler,
                            keep_models=args.keep_models)
    name = f"{args.name}{'-quick' if args.quick else ''}.json"
    print(f"wrote {os.path.join(out, name)} ({result['wall_seconds']:.0f} s)")


def _report(args):
    from dkp.study.plans import STUDIES
    from dkp.study.report import detect, markdown
    if not os.path.isdir(args.directory):
        raise ValueError(f"report: {args.directory!r} is not a directory of experiment results")
    study = detect(args.directory, STUDIES, quick=args.quick)
    if study is None:
        raise ValueError(f"no experiment results (NAME{'-quick' if args.quick else ''}.json) in {args.directory!r}")
    print(markdown(study, args.directory, quick=args.quick), end="")


def _plot(args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dkp.core import io
    from dkp.course.figures import cma as cma_figures
    from dkp.course.figures import curves
    result = io.load_json(args.results)
    draw = {"arms": curves.plot_arms, "curves": curves.plot_arm_curves, "cma": cma_figures.plot_cma,
            "share": cma_figures.plot_branch_share, "probes": cma_figures.plot_probe_curves}[args.kind]
    if args.kind == "probes":
        ax = draw(result, arms=args.arms, since=args.since, log=args.since is None)
    else:
        ax = draw(result, arms=args.arms) if args.kind in ("cma", "share") else draw(result)
    ax.figure.savefig(args.out, dpi=110)
    plt.close(ax.figure)
    print(f"wrote {args.out}")


def _checked(parse):
    """An argparse type from a parser that raises ValueError saying what it expected."""
    def check(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return check


def _blas_threads(argv):
    """`train --threads N` must reach the BLAS before NumPy loads it, and building the parser below
    already imports NumPy: read it first. (Called in a process that has loaded NumPy already, as
    the tests call main(), it changes nothing.)"""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int)
    known, _ = pre.parse_known_args(argv)
    if known.threads is not None and known.threads > 0:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(known.threads)


def main(argv=None):
    _blas_threads(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m dkp", description=(
        "dkp: doped Kronecker products for LSTM (and transformer) language models, in NumPy."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a language model on the Penn Treebank",
                       description="Train a language model, the LSTM or the transformer, on PTB (from the "
                                   "`treebank` package).")
    from dkp.training.configs import COUNT
    p.add_argument("--config", default="small",
                   help="a named configuration: small, medium, large (Zaremba et al.'s LSTMs), tiny (an LSTM demo), "
                        "transformer-tiny (for tests, seconds) or transformer-small (PTB, about an hour) "
                        "(default small)")
    p.add_argument("--seed", type=_checked(COUNT), default=0, help="seed of initialisation and dropout (default 0)")
    p.add_argument("--out", default="runs/latest", help="directory for checkpoint.npz and metrics.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, a second run there is refused)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--threads", type=int, metavar="N",
                   help="BLAS threads (default: one per core, the fastest measured on 2 cores: "
                        "data/results/train_speed.json); use 1 when other work shares the cores, whose "
                        "waiting threads would otherwise spin against it")
    # every field of the config, from its own declaration (dkp.training.configs.option)
    from dkp.training.flags import add_config_flags
    add_config_flags(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="perplexity of a saved checkpoint",
                       description="Evaluate CHECKPOINT (a checkpoint.npz written by train).")
    p.add_argument("checkpoint")
    p.add_argument("--splits", nargs="+", default=["valid", "test"], choices=["train", "valid", "test"])
    p.set_defaults(func=_eval)

    from dkp.study.catalog import ALL, EXPERIMENTS, SEARCH, TRANSFORMER, WHOLE
    p = sub.add_parser("experiment", help="run a named experiment over seeds and write its JSON",
                       description="Run every arm of a named experiment over seeds; write OUT/NAME.json. "
                                   "The course's experiments: " + ", ".join(EXPERIMENTS) + "; the co-matrix "
                                   "adaptation search's (data/results/cma-search/PLAN.md): " + ", ".join(SEARCH)
                                   + "; the whole model's (embedding and softmax too, from a teacher): "
                                   + ", ".join(WHOLE) + "; the transformer study's (Kronecker transformers and "
                                   "converged teachers, data/results/transformer/PLAN.md): " + ", ".join(TRANSFORMER))
    p.add_argument("name", choices=ALL)
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 per arm (default: the plan's, 3; 9 for cmr-replication "
                                             "and 6 for cma-long-replication)")
    p.add_argument("--quick", action="store_true", help="a short version on a slice of PTB (CI, notebooks)")
    p.add_argument("--scale", default="course", choices=["course", "paper"],
                   help="course: the laptop scale (default); paper: medium 2 x 650 at 25x (not for the "
                        "transformer study's families, whose plan fixes their one scale)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs in parallel, one BLAS thread each (default 1; 0: one per core)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on Dask (pip install \"dkp[cluster]\"): 'local' starts a cluster of single-threaded "
                        "workers on this machine (--jobs of them, default one per core); tcp://HOST:8786 uses "
                        "the workers of a running `dask scheduler`")
    p.add_argument("--arms", nargs="+", help="run only these arms")
    p.add_argument("--keep-models", action="store_true",
                   help="keep each run's trained model (checkpoint.npz, metrics.json) under OUT/models/")
    p.add_argument("--out", help="output directory (default data/results; data/results/cma-search, "
                                 "data/results/whole-model and data/results/transformer for those studies' families)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_experiment)

    p = sub.add_parser("report", help="tables and the verdict on each effect, from experiment JSON",
                       description="Markdown tables of every experiment in DIRECTORY and the four effects.")
    p.add_argument("directory", nargs="?", default="data/results")
    p.add_argument("--quick", action="store_true", help="read the NAME-quick.json files")
    p.set_defaults(func=_report)

    p = sub.add_parser("plot", help="draw a figure from an experiment's JSON into a PNG",
                       description="Draw one figure of an experiment's results JSON.")
    p.add_argument("kind", choices=["arms", "curves", "cma", "share", "probes"],
                   help="arms: final perplexities; curves: learning curves; cma: perplexity with and "
                        "without S along the anneal; share: S's share of the gates' energy; probes: "
                        "(the search's results) slice perplexity at the same epochs in every arm")
    p.add_argument("results", help="a NAME.json written by `experiment`")
    p.add_argument("--arms", nargs="+", help="(cma, share, probes) the arms to draw")
    p.add_argument("--since", type=float, metavar="EPOCH", help="(probes) from this epoch on, linear scale")
    p.add_argument("--out", required=True, help="PNG path")
    p.set_defaults(func=_plot)

    args = parser.parse_args(argv)
    from dkp.core.data import DataError
    from dkp.core.io import CheckpointError
    from dkp.study.runner import RunsFailed
    from dkp.training.loop import TrainingDiverged
    try:
        args.func(args)
    except (DataError, CheckpointError, TrainingDiverged, RunsFailed, ValueError, ImportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
