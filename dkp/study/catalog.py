"""The named experiments, the one place to add one: each a set of arms (training configs) at a scale.

    python -m dkp experiment NAME [--seeds N] [--quick] [--scale course|paper] [--jobs J] [--out DIR]

The experiments show the four effects of the course, one family each:

    kp-loss   dense vs a dense LSTM shrunk to the same LSTM parameter count vs KP
    doping    KP vs doped KP (annealed S, with and without co-matrix dropout)
    cma       doped KP annealed without CMR, with the CMA diagnostics along the anneal
    cmr       the same with CMR: a sweep of p for the "output" variant, and the three variants
    methods   doped KP vs pruning vs LMF vs HMD vs doped LMF vs doped HMD, at one compression
    kp-splits KP with the Kronecker split of the largest reachable rank (every other arm's) vs the
              split of the fewest multiply-adds (faster at inference); doped KP too where the two
              rules give it different splits (the paper scale)
    recipes   the search behind each arm's optimizer: dense, pruning, KP, LMF, HMD and doped KP, LMF
              and HMD, each under plain SGD and under Adam (run it with --seeds 1)

The search for co-matrix adaptation and for what co-matrix dropout does (data/results/cma-search/,
its PLAN.md fixed before the runs) has families of its own, written to data/results/cma-search/
by default, whose runs record more along the way (SEARCH_PROBES):

    cma-timing     when and how fast S is annealed: early-and-long, early-and-short, late-and-short
                   (with and without recovery after it), and S never annealed (the control)
    cma-density    the final density of S: 1%, 0.1%, 0.01% (late-and-short anneal)
    cma-init       S starting at zero vs as the residual W - nearest KP of a briefly trained dense LSTM
    cmr-schedule   co-matrix dropout on the late-and-short anneal: constant p, p only below a
                   density threshold, p growing as S empties, and without the 1/(1-p) rescaling
    cmr-branch     whole-branch dropout on the early-and-long anneal, rescaled (as in `cmr`), not
                   rescaled, and only below a density threshold
    cma-long       the whole PTB training split for 3 epochs: dense, KP, doped KP with and without
                   co-matrix dropout (late-and-short anneal)

and the replication its plan's addendum fixed before those runs, with more seeds (PLANNED_SEEDS):

    cmr-replication       cmr-schedule's late-short and output-p0.3, seeds 0-8
    cma-long-replication  cma-long's late-short and late-short-output-p0.3, seeds 0-5

The whole model (data/results/whole-model/ by default): the embedding and the softmax compressed
too, and every compressed matrix taken from a trained dense model (the teacher), as GroupReduce and
the Kronecker papers on transformers do:

    groupreduce    the embedding and softmax alone: GroupReduce vs one truncated SVD vs magnitude
                   pruning at 6x, GroupReduce at 12x, each compressed from the trained dense model
                   (the teacher, the `dense` arm) and trained on for the course's epochs
    whole-model    dense (the teacher); LSTM-only doped KP from scratch and from the teacher (with and
                   without distillation); GroupReduce; GroupReduce with doped KP (whole model > 10x)

Their runs also record the trained model stored in 8 bits (dkp.compression.quantize): bytes and
perplexity.

The transformer study (data/results/transformer/ by default, its PLAN.md fixed before the runs):
Kronecker transformers from a converged teacher, as KnGPT2 and KroneckerBERT compress GPT-2 and
BERT, and the LSTM taught by a converged teacher (TRANSFORMER; their arms in
`dkp.study.transformer_catalog`):

    kron-transformer  from the `transformer-course` teacher: KP from scratch and from the teacher, with
                      and without layer-by-layer distillation, doped, a rank-2 KP student against a
                      DistilGPT2-style half-depth one; each on a light budget and the teacher's
    transformer-cma   the doped student's S annealed late, with and without co-matrix dropout, and held
    lstm-converged    doped KP LSTMs from the 13-epoch `small` teacher: no distillation, ILKD, the KL
                      term alone; on a light budget and the course's

Every arm of a scale shares everything but what the arm changes (data, epochs, anneal window; the
optimizer goes by the kind of arm, see SCALES), so differences between arms come from the method.
To add an experiment: a name in EXPERIMENTS (or SEARCH, WHOLE, TRANSFORMER) and its arms in `arms`
(or `search_arms`, `whole_arms`, `dkp.study.transformer_catalog`); `dkp.study.runner` trains any of them.
"""
from __future__ import annotations

import functools
import math
import os

from dkp.compression import shapes
from dkp.compression.kron_view import gate_shape
from dkp.study import transformer_catalog as tc
from dkp.study.transformer_catalog import BLOCK_COMPRESSION, EMBED_ROW, LIGHT_SHARE, TEACHER_OF, TRANSFORMER  # noqa: F401
from dkp.training.configs import get_config

# "course": chosen so that every family, all arms and 3 seeds, fits in an hour on a 2-core laptop
# (see data/results/README.md for the search that chose it). "paper": Zaremba's medium model with
# its LSTM layers compressed 25x, as in the doping paper: one flag away, for people with time.
#
# Every arm trains with Zaremba's recipe (plain SGD, lr 1, halved after each epoch from
# `decay_after`, one global clip at 5), except the kinds of arm listed in `factor_recipe_for`, which
# use `factor_optimizer` (Adam): for each kind, the better of the two recipes in the `recipes`
# search (data/results/README.md). Arms made of factors alone (kp, lmf, hmd) do not train well under
# SGD, whose one learning rate suits a dense matrix's gradients, not the factors' (plain KP stays at
# perplexity 1,283); doped KP does better under SGD, doped LMF and HMD under Adam. The recipe of
# every arm is stored with its results.
FACTOR_RECIPE_FOR = ("kp", "lmf", "hmd", "doped-lmf", "doped-hmd")   # kinds of arm trained with Adam


SCALES = {
    "course": dict(base=get_config("small").with_(
        name="course", hidden=200, layers=2, epochs=2, bptt=20, dropout=0.0, init_scale=0.1,
        optimizer="sgd", lr=1.0, lr_decay=2.0, decay_after=1, clip=5.0, train_tokens=500_000,
        anneal_start=0.1, anneal_end=1.5, anneal_every=20, eval_tokens=0), compression=20.0, doping=0.01,
        cmr_p=0.3, factor_optimizer=dict(optimizer="adam", lr=2e-3), factor_recipe_for=FACTOR_RECIPE_FOR),
    "paper": dict(base=get_config("medium").with_(
        name="paper", anneal_start=1.0, anneal_end=20.0, anneal_every=100),
        compression=25.0, doping=0.01, cmr_p=0.3, factor_optimizer=dict(optimizer="adam", lr=1.5e-3),
        factor_recipe_for=FACTOR_RECIPE_FOR),
}


# --quick: the same arms on a slice of PTB with hidden sizes divided by QUICK_SHRINK, for CI and
# the notebooks (each experiment < 2 minutes).
QUICK = dict(epochs=2, train_tokens=100_000, eval_tokens=10_000, anneal_start=0.25, anneal_end=1.5,
             anneal_every=5, decay_after=1)


QUICK_SHRINK = 4
# The whole model's --quick runs train on half QUICK's slice: a student is its teacher's training
# plus as much again (4 quick epochs), and CI runs them in notebooks 09 and 10.
QUICK_WHOLE_TOKENS = 50_000


def shrunk_hidden(config, compression):
    """Hidden size H' of a dense LSTM whose gate matrices hold about 1/compression of the
    parameters of those of hidden size H (8 H^2 each): H' = H / sqrt(compression)."""
    return max(2, int(round(config.hidden / math.sqrt(compression))))


def _splits_differ(config):
    """Whether kron_shape's two rules give `config`'s Kronecker part different factor shapes."""
    shape = gate_shape(config.hidden)
    target = shapes.structured_target(shape, config.compression, config.doping) if config.doping else config.compression
    return shapes.kron_shape(shape, target) != shapes.kron_shape(shape, target, prefer="flops")


def arms(name, scale="course"):
    """{arm name: config} of experiment `name` at `scale`."""
    s = SCALES[scale]
    base, c, d, p = s["base"], s["compression"], s["doping"], s["cmr_p"]

    # every kind of arm, before its optimizer: the recipes search tries each under both recipes,
    # the other experiments use each under the recipe the scale gives it
    kinds = {"dense": base, "prune": base.with_(structure="prune", compression=c),
             **{k: base.with_(structure=k, compression=c) for k in ("kp", "lmf", "hmd")},
             "doped-kp": base.with_(structure="kp", compression=c, doping=d),
             **{f"doped-{k}": base.with_(structure=k, compression=c, doping=d, cmr_p=p) for k in ("lmf", "hmd")}}
    arm = {kind: config.with_(**(s["factor_optimizer"] if kind in s["factor_recipe_for"] else {}))
           for kind, config in kinds.items()}
    kp, doped = arm["kp"], arm["doped-kp"]
    families = {
        "kp-loss": {
            "dense": arm["dense"],
            "dense-shrunk": arm["dense"].with_(hidden=shrunk_hidden(base, c)),
            "kp": kp,
        },
        "doping": {
            "kp": kp,
            "doped-kp": doped,
            "doped-kp-cmr": doped.with_(cmr_p=p),
        },
        "cma": {
            "doped-kp": doped,
        },
        "cmr": {
            "doped-kp": doped,
            **{f"output-p{q:g}": doped.with_(cmr_p=q) for q in (0.1, 0.3, 0.5)},
            f"branch-p{p:g}": doped.with_(cmr_p=p, cmr_variant="branch"),
            f"connect-p{p:g}": doped.with_(cmr_p=p, cmr_variant="connect"),
        },
        # the Kronecker split a user should pick: the largest reachable rank (the papers', every other
        # arm's) against the fewest multiply-adds, for doped KP only where the two rules differ (at
        # the course scale S's share of the budget leaves its Kronecker part one split family)
        "kp-splits": {
            "kp": kp,
            "kp-flops": kp.with_(kp_split="flops"),
            **({"doped-kp": doped, "doped-kp-flops": doped.with_(kp_split="flops")}
               if _splits_differ(doped) else {}),
        },
        "methods": {
            "doped-kp": doped.with_(cmr_p=p),
            **{k: arm[k] for k in ("prune", "lmf", "hmd", "doped-lmf", "doped-hmd")},
        },
        # the search behind the recipe rule above: every kind of arm under both recipes (one seed)
        "recipes": {f"{kind}-{recipe_name}": config.with_(**opt) for kind, config in kinds.items()
                    for recipe_name, opt in (("sgd", {"optimizer": base.optimizer, "lr": base.lr}),
                                             ("adam", s["factor_optimizer"]))},
    }
    if name not in families:
        raise ValueError(f"experiment must be one of {sorted(families)}, got {name!r}")
    return families[name]


EXPERIMENTS = ("kp-loss", "doping", "cma", "cmr", "methods", "kp-splits", "recipes")


SEARCH = ("cma-timing", "cma-density", "cma-init", "cmr-schedule", "cmr-branch", "cma-long",
          "cmr-replication", "cma-long-replication")


# Seeds per arm as each family's plan fixed them (0..n-1): 3 unless listed (the recipe search runs
# one, a look at each recipe rather than a comparison under the rule). The replication's
# families take the plan's seeds 0-2 from the families they replicate (the same arm and seed is
# trained once) and add seeds of their own.
PLANNED_SEEDS = {"recipes": 1, "cmr-replication": 9, "cma-long-replication": 6}


def planned_seeds(name):
    """How many seeds (0..n-1) the plan of experiment `name` runs per arm."""
    return PLANNED_SEEDS.get(name, 3)


SEARCH_OUT = os.path.join("data", "results", "cma-search")


WHOLE = ("groupreduce", "whole-model")


WHOLE_OUT = os.path.join("data", "results", "whole-model")


# the anneal windows (epochs) the search compares, at the course scale's 2 epochs
WINDOWS = {"early-long": (0.1, 1.5), "early-short": (0.25, 0.5), "late-short": (1.5, 1.75),
           "late-short-norec": (1.75, 2.0)}


LONG = dict(train_tokens=0, epochs=3, decay_after=2)  # cma-long: all of PTB's train split, 3 epochs


def search_arms(name, scale="course"):
    """{arm name: config} of the search family `name` (see PLAN.md for what each tests)."""
    s = SCALES[scale]
    course = arms("doping", scale)
    doped = course["doped-kp"]                       # SGD, 1% of S, no CMR, anneal 0.1 -> 1.5
    p = s["cmr_p"]

    def window(config, name):
        a, b = WINDOWS[name]
        return config.with_(anneal_start=a, anneal_end=b)

    late = window(doped, "late-short")
    families = {
        "cma-timing": {**{w: window(doped, w) for w in WINDOWS}, "hold": doped.with_(anneal_s=False)},
        "cma-density": {"late-short": late, "late-short-d0.001": late.with_(doping=0.001),
                        "late-short-d0.0001": late.with_(doping=0.0001)},
        "cma-init": {"early-long": doped, "late-short": late,
                     "residual-early-long": doped.with_(dense_warmup=0.1),
                     "residual-late-short": late.with_(dense_warmup=0.1)},
        "cmr-schedule": {"late-short": late,
                         f"output-p{p:g}": late.with_(cmr_p=p),
                         f"output-p{p:g}-threshold": late.with_(cmr_p=p, cmr_schedule="threshold"),
                         f"output-p{p:g}-density": late.with_(cmr_p=p, cmr_schedule="density"),
                         f"output-p{p:g}-norescale": late.with_(cmr_p=p, cmr_rescale=False)},
        "cmr-branch": {"early-long": doped,
                       f"branch-p{p:g}": doped.with_(cmr_p=p, cmr_variant="branch"),
                       f"branch-p{p:g}-norescale": doped.with_(cmr_p=p, cmr_variant="branch", cmr_rescale=False),
                       f"branch-p{p:g}-threshold": doped.with_(cmr_p=p, cmr_variant="branch",
                                                               cmr_schedule="threshold")},
        "cma-long": {k: v.with_(**LONG) for k, v in {
            "dense": arms("kp-loss", scale)["dense"], "kp": course["kp"],
            "late-short": late.with_(anneal_start=2.5, anneal_end=2.75),
            f"late-short-output-p{p:g}": late.with_(anneal_start=2.5, anneal_end=2.75, cmr_p=p)}.items()},
    }
    # the replication (PLAN.md's addendum): the arms behind H4 and H6c, unchanged, with more seeds
    families["cmr-replication"] = {k: families["cmr-schedule"][k] for k in ("late-short", f"output-p{p:g}")}
    families["cma-long-replication"] = {k: families["cma-long"][k]
                                        for k in ("late-short", f"late-short-output-p{p:g}")}
    return families[name]


# The whole model (data/results/whole-model/): the embedding and softmax compressed too, and
# compression from a trained dense model (the teacher) with and without distillation. A student is
# the scale's dense model trained in full with the `dense` arm's config and seed (close to that arm's
# model, not always identical to it: each run's `switch` record has the teacher's perplexity), then compressed;
# it trains on for the scale's epochs with the learning-rate schedule started again at the switch
# (lr_restart) and its anneal window shifted with it, so that it gets as many steps, at the same
# rates, as the arm trained compressed from scratch it is compared with.
VOCAB_COMPRESSION = (6.0, 12.0)         # GroupReduce's 6.6x, and one that brings the model past 10x
DISTILL = dict(distill_kl=1.0, distill_hidden=1.0)


def whole_arms(name, scale="course"):
    """{arm name: config} of the whole-model family `name`: "groupreduce" (the embedding and softmax
    alone, GroupReduce against one SVD and magnitude pruning at the same budget) or "whole-model"
    (LSTM-only doped KP, GroupReduce, both, from scratch or from the teacher, with and without
    distillation). `dense` is the teacher: the course's dense model."""
    course = arms("kp-loss", scale)["dense"]
    doped = arms("doping", scale)["doped-kp"]
    W = course.epochs                   # the teacher: the dense model trained in full

    def student(config, **changes):
        return config.with_(epochs=config.epochs + W, dense_warmup=float(W), lr_restart=True,
                            anneal_start=config.anneal_start + W, anneal_end=config.anneal_end + W, **changes)

    lo, hi = VOCAB_COMPRESSION

    def vocab(kind, c):
        return dict(vocab_structure=kind, vocab_compression=c)

    families = {
        "groupreduce": {"dense": course,
                        **{f"{kind}-{lo:g}x": student(course, **vocab(kind, lo)) for kind in ("groupreduce", "svd", "prune")},
                        f"groupreduce-{hi:g}x": student(course, **vocab("groupreduce", hi))},
        "whole-model": {"dense": course, "doped-kp": doped,
                        "doped-kp-teacher": student(doped),
                        "doped-kp-teacher-ilkd": student(doped, **DISTILL),
                        f"groupreduce-{hi:g}x": student(course, **vocab("groupreduce", hi)),
                        f"groupreduce-{hi:g}x-ilkd": student(course, **vocab("groupreduce", hi), **DISTILL),
                        f"groupreduce-{hi:g}x-doped-kp": student(doped, **vocab("groupreduce", hi)),
                        f"groupreduce-{hi:g}x-doped-kp-ilkd": student(doped, **vocab("groupreduce", hi), **DISTILL)},
    }
    return families[name]


# The transformer study (data/results/transformer/, its PLAN.md fixed before the runs): its families
# and their arms live in dkp.study.transformer_catalog; these bind them to this module's course scale,
# distillation weights and --quick shrink.
TRANSFORMER_OUT = os.path.join("data", "results", "transformer")


def transformer_arms(name):
    """{arm name: config} of the transformer study's family `name` (TRANSFORMER)."""
    if name == "lstm-converged":
        return tc.lstm_converged(arms("doping")["doped-kp"], DISTILL)
    return tc.transformer_arms(name)


def quick_transformer(config):
    """The --quick version of a transformer-study arm (`tc.quick_transformer`, at QUICK_SHRINK and
    QUICK_WHOLE_TOKENS)."""
    return tc.quick_transformer(config, QUICK_SHRINK, QUICK_WHOLE_TOKENS)


def quick_teacher(name):
    """The config of the teacher "@NAME": NAME's, or for NAME-quick its --quick version."""
    return tc.quick_teacher(name, QUICK_SHRINK, QUICK_WHOLE_TOKENS)


def size_against_teacher(name, quick_mode=False):
    """The sizing function of family `name`'s runs against its teacher (`tc.size_against_teacher`); an
    LSTM family's also gives its gate matrices' compression against the teacher's (`lstm_size`)."""
    teacher = quick_teacher(TEACHER_OF[name] + (tc.QUICK_SUFFIX if quick_mode else ""))
    size = tc.size_against_teacher(teacher)
    if teacher.model != "lstm":
        return size
    return lambda run: {**size(run), "gate_compression": lstm_size(run["layers"], teacher.hidden)["compression"]}


def quick(config):
    """The --quick version of an arm: a slice of PTB, hidden sizes divided by QUICK_SHRINK. An arm
    that keeps the course scale's anneal window gets QUICK's; one with a window of its own (the
    search's) keeps it, as fractions of the same two epochs."""
    changes = dict(QUICK)
    course = SCALES["course"]["base"]
    if (config.anneal_start, config.anneal_end) != (course.anneal_start, course.anneal_end):
        del changes["anneal_start"], changes["anneal_end"]
    if config.epochs != course.epochs:  # a longer family stays longer than the quick default
        changes["epochs"], changes["decay_after"] = config.epochs, config.decay_after
    return config.with_(**changes, hidden=max(4, config.hidden // QUICK_SHRINK), name=config.name + "-quick")


def lstm_size(layers, reference_hidden):
    """Parameters and bytes of the LSTM gate matrices, and their compression against the dense gate
    matrices (4H x 2H each) of the experiment's reference hidden size H, so that a shrunk dense
    LSTM counts as compressed too."""
    n_params = int(sum(r["n_params"] for r in layers))
    H = reference_hidden
    return {"n_params": n_params, "n_bytes": int(sum(r["n_bytes"] for r in layers)),
            "compression": float(len(layers) * 8 * H * H / n_params)}


ALL = EXPERIMENTS + SEARCH + WHOLE + TRANSFORMER


def experiment_arms(name, scale="course"):
    """{arm name: config} of any named experiment: the course's, the search's or the whole model's."""
    if name in SEARCH:
        return search_arms(name, scale)
    if name in EXPERIMENTS:
        return arms(name, scale)
    if name in WHOLE:
        return whole_arms(name, scale)
    if name in TRANSFORMER:
        return transformer_arms(name)
    raise ValueError(f"experiment must be one of {list(ALL)}, got {name!r}")


def group(name):
    """The experiments that share runs with `name` (the same arm and seed is trained once)."""
    return next(g for g in (EXPERIMENTS, SEARCH, WHOLE, TRANSFORMER) if name in g)


def default_out(name):
    """Where `experiment NAME` writes by default: data/results, data/results/cma-search or
    data/results/whole-model."""
    return (SEARCH_OUT if name in SEARCH else WHOLE_OUT if name in WHOLE else TRANSFORMER_OUT if name in TRANSFORMER
            else os.path.join("data", "results"))
