"""The command line: python -m dkp COMMAND ...  (python -m dkp COMMAND --help for each)

    train       train a language model on the Penn Treebank (a named config, any structure)
    eval        the perplexity of a saved checkpoint
    experiment  run a named experiment (dkp.course.catalog) over seeds and write its JSON
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
    from dkp.training.loop import train
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive number of BLAS threads, got {args.threads}")
    config = get_config(args.config)
    changes = {k: getattr(args, k) for k in ("epochs", "train_tokens", "optimizer", "lr", "structure",
                                            "compression", "doping", "kp_rank", "kp_split", "anneal_start", "anneal_end",
                                            "cmr_p", "cmr_variant", "cmr_schedule", "cmr_threshold", "cmr_rescale",
                                            "anneal_s", "dense_warmup", "lr_restart", "vocab_structure", "vocab_compression",
                                            "vocab_groups", "distill_kl", "distill_hidden")
               if getattr(args, k) is not None}
    config = config.with_(**changes)
    metrics = train(config, seed=args.seed, out=args.out, resume=args.resume, progress=not args.quiet)
    print(f"final: valid ppl {metrics['final_valid_ppl']:.2f}  test ppl {metrics['test_ppl']:.2f}  "
          f"({metrics['mean_words_per_sec']:.0f} words/s)" if metrics["epochs"] else "nothing to train")
    print(f"wrote {os.path.join(args.out, 'metrics.json')}")


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
    from dkp.course.catalog import default_out
    from dkp.course.experiments import run_experiment
    out = args.out or default_out(args.name)
    result = run_experiment(args.name, seeds=args.seeds, quick_mode=args.quick, scale=args.scale, out=out,
                            jobs=args.jobs, progress=not args.quiet, only=args.arms, scheduler=args.scheduler,
                            keep_models=args.keep_models)
    name = f"{args.name}{'-quick' if args.quick else ''}.json"
    print(f"wrote {os.path.join(out, name)} ({result['wall_seconds']:.0f} s)")


def _report(args):
    from dkp.course import search
    from dkp.course.report import load_results, markdown
    results = load_results(args.directory, quick=args.quick)
    if results:
        print(markdown(results), end="")
        return
    from dkp.course import whole
    found = whole.load(args.directory, quick=args.quick)
    if found:
        print(whole.markdown(found), end="")
        return
    found = search.load(args.directory, quick=args.quick)
    if not found:
        raise ValueError(f"no experiment results (NAME{'-quick' if args.quick else ''}.json) in {args.directory!r}")
    # the course's kp-loss result, one folder up, for the long scale's comparison (H6a)
    course = load_results(os.path.dirname(os.path.abspath(args.directory)), quick=args.quick).get("kp-loss")
    print(search.markdown(found, course), end="")


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
        "dkp: doped Kronecker products for LSTM language models, in NumPy."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a language model on the Penn Treebank",
                       description="Train an LSTM language model on PTB (from the `treebank` package).")
    p.add_argument("--config", default="small", help="small, medium, large (Zaremba et al.) or tiny")
    p.add_argument("--epochs", type=int, help="total epochs (default: the config's)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and dropout (default 0)")
    p.add_argument("--out", default="runs/latest", help="directory for checkpoint.npz and metrics.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--train-tokens", type=int, help="train on the first N tokens of the train split only")
    p.add_argument("--optimizer", choices=["sgd", "adam"], help="default: the config's (sgd)")
    p.add_argument("--lr", type=float, help="learning rate (default: the config's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--threads", type=int, metavar="N",
                   help="BLAS threads (default: one per core, the fastest measured on 2 cores: "
                        "data/results/train_speed.json); use 1 when other work shares the cores, whose "
                        "waiting threads would otherwise spin against it")
    g = p.add_argument_group("compression of the LSTM gate matrices")
    g.add_argument("--structure", choices=["dense", "kp", "lmf", "hmd", "prune"],
                   help="kp: Kronecker product, lmf: low rank, hmd: hybrid, prune: magnitude pruning")
    g.add_argument("--compression", type=float, help="target compression factor of each gate matrix")
    g.add_argument("--kp-rank", type=int, help="number of Kronecker products summed (default 1)")
    g.add_argument("--kp-split", choices=["rank", "flops"],
                   help="Kronecker factor shapes: the largest reachable rank (rank, default, the papers') or the "
                        "fewest multiply-adds (flops, faster; kron_shape's rule in dkp.compression.shapes)")
    g.add_argument("--doping", type=float, metavar="DENSITY",
                   help="final density of the sparse overlay S (kp, lmf, hmd), e.g. 0.01")
    g.add_argument("--anneal-start", type=float, metavar="EPOCH", help="start of the density anneal (default 0)")
    g.add_argument("--anneal-end", type=float, metavar="EPOCH", help="end of the density anneal (default 1)")
    g.add_argument("--cmr-p", type=float, help="co-matrix dropout probability on S (default 0)")
    g.add_argument("--cmr-variant", choices=["output", "branch", "connect"], help="co-matrix dropout variant")
    g.add_argument("--cmr-schedule", choices=["constant", "threshold", "density"],
                   help="p throughout (constant), only once S's density <= --cmr-threshold, or growing as S empties")
    g.add_argument("--cmr-threshold", type=float, metavar="DENSITY", help="(threshold schedule) default 0.1")
    g.add_argument("--no-cmr-rescale", dest="cmr_rescale", action="store_const", const=False,
                   help="do not divide the kept part of S by 1 - p")
    g.add_argument("--no-anneal", dest="anneal_s", action="store_const", const=False,
                   help="keep S dense for the whole run (the control of an anneal)")
    g.add_argument("--dense-warmup", type=float, metavar="EPOCHS",
                   help="train dense this long (the teacher), then compress every matrix from it; doped: S "
                        "starts as the residual W - nearest structured matrix")
    g.add_argument("--lr-restart", action="store_const", const=True,
                   help="start the learning-rate schedule again at the switch (a whole number of epochs of "
                        "--dense-warmup): the compressed model trains at the rates of one compressed from the start")
    g = p.add_argument_group("compression of the embedding and the softmax (from a dense warm-up)")
    g.add_argument("--vocab-structure", choices=["dense", "groupreduce", "svd", "prune"],
                   help="how both V x H matrices are compressed after --dense-warmup (default dense)")
    g.add_argument("--vocab-compression", type=float, help="their compression factor (parameters)")
    g.add_argument("--vocab-groups", type=int, help="(groupreduce) frequency groups (default 10)")
    g = p.add_argument_group("distillation from the dense warm-up's model (the teacher)")
    g.add_argument("--distill-kl", type=float, metavar="WEIGHT", help="weight of KL(teacher || student) of the outputs")
    g.add_argument("--distill-hidden", type=float, metavar="WEIGHT",
                   help="weight of the mean squared difference of the LSTM layers' hidden states")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="perplexity of a saved checkpoint",
                       description="Evaluate CHECKPOINT (a checkpoint.npz written by train).")
    p.add_argument("checkpoint")
    p.add_argument("--splits", nargs="+", default=["valid", "test"], choices=["train", "valid", "test"])
    p.set_defaults(func=_eval)

    from dkp.course.catalog import ALL, EXPERIMENTS, SEARCH, WHOLE
    p = sub.add_parser("experiment", help="run a named experiment over seeds and write its JSON",
                       description="Run every arm of a named experiment over seeds; write OUT/NAME.json. "
                                   "The course's experiments: " + ", ".join(EXPERIMENTS) + "; the co-matrix "
                                   "adaptation search's (data/results/cma-search/PLAN.md): " + ", ".join(SEARCH)
                                   + "; the whole model's (embedding and softmax too, from a teacher): "
                                   + ", ".join(WHOLE))
    p.add_argument("name", choices=ALL)
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 per arm (default: the plan's, 3; 9 for cmr-replication "
                                             "and 6 for cma-long-replication)")
    p.add_argument("--quick", action="store_true", help="a short version on a slice of PTB (CI, notebooks)")
    p.add_argument("--scale", default="course", choices=["course", "paper"],
                   help="course: the laptop scale (default); paper: medium 2 x 650 at 25x")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs in parallel, one BLAS thread each (default 1; 0: one per core)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on Dask (pip install \"dkp[cluster]\"): 'local' starts a cluster of single-threaded "
                        "workers on this machine (--jobs of them, default one per core); tcp://HOST:8786 uses "
                        "the workers of a running `dask scheduler`")
    p.add_argument("--arms", nargs="+", help="run only these arms")
    p.add_argument("--keep-models", action="store_true",
                   help="keep each run's trained model (checkpoint.npz, metrics.json) under OUT/models/")
    p.add_argument("--out", help="output directory (default data/results; data/results/cma-search for the "
                                 "search's experiments)")
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
    from dkp.course.experiments import RunsFailed
    from dkp.training.loop import TrainingDiverged
    try:
        args.func(args)
    except (DataError, CheckpointError, TrainingDiverged, RunsFailed, ValueError, ImportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
