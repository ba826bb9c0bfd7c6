"""The transformer study's part of the catalog (data/results/transformer/PLAN.md, its addendum):
the arms of its three families, `kron-transformer`, `transformer-cma` and `lstm-converged`
(`transformer_arms`), their --quick versions and the shrunk teachers they start from
(`quick_transformer`, `quick_teacher`), and each arm's size against its family's teacher
(`size_against_teacher`). It imports nothing of `dkp.study.catalog`, which names the families beside
every other experiment and calls these with what they take from it (the course's doped LSTM, the
whole-model study's distillation weights, the --quick shrink and slice)."""
from __future__ import annotations

import functools

from dkp.training.configs import get_config

TRANSFORMER = ("kron-transformer", "transformer-cma", "lstm-converged")

PTB_TRAIN_TOKENS = 929_590        # PTB's word-level training split (dkp.core.data), for the light budget
LIGHT_SHARE = 0.1                 # the light budget: this share of the training split, one epoch (KnGPT2)
BLOCK_COMPRESSION = 10.0          # "high": every block matrix at 10x by kron_shape's rule
EMBED_ROW = 16                    # "high": the embedding as A (V x H/16) kron B (1 x 16)
ILKD = dict(distill_embed=1.0, distill_attn=1.0, distill_hidden=1.0, distill_kl=1.0)   # each term 1
# The anneal, as a share of each run (0.1 to 0.75 of the light run's epoch, 0.3 to 2.25 of the full
# run's 3 epochs), re-masks S about 25 times in each: every ANNEAL_EVERY[budget] steps (72 steps
# make the light run, 2,178 the full one at batch 20 x 64 tokens).
ANNEAL_EVERY = {"light": 2, "full": 50, "late": 7}


def light(config, share=LIGHT_SHARE, tokens=PTB_TRAIN_TOKENS):
    """The light budget of `config`: `share` of the training split (of `tokens` tokens), one epoch."""
    return config.with_(train_tokens=int(tokens * share), epochs=1)


def transformer_arms(name):
    """{arm name: config} of the transformer study's family `name` (see data/results/transformer/PLAN.md):
    "kron-transformer" or "transformer-cma" (lstm-converged: `lstm_converged`)."""
    teacher = get_config("transformer-course")
    T = teacher.epochs
    start = teacher.with_(name="transformer-student", teacher="@transformer-course")
    high = start.with_(structure="kp", compression=BLOCK_COMPRESSION, vocab_structure="kp", vocab_compression=EMBED_ROW)
    doped = high.with_(doping=0.01, anneal_start=0.1 * T, anneal_end=0.75 * T, anneal_every=ANNEAL_EVERY["full"])
    matched = start.with_(structure="kp", compression=2.0, kp_rank=2)      # rank 2, B 2 x 2: 2x on the blocks
    half = start.with_(layers=teacher.layers // 2, teacher_blocks=",".join(map(str, range(0, teacher.layers, 2))))
    if name == "transformer-cma":
        late = doped.with_(anneal_start=0.75 * T, anneal_end=T * 5 / 6, anneal_every=ANNEAL_EVERY["late"])
        return {"late": late, "late-output-p0.3": late.with_(cmr_p=0.3), "hold": late.with_(anneal_s=False)}
    if name != "kron-transformer":
        raise ValueError(f"transformer family must be one of {list(TRANSFORMER)}, got {name!r}")
    full = {"kp-scratch": high.with_(teacher=""), "kp-teacher": high, "kp-teacher-ilkd": high.with_(**ILKD),
            "doped-teacher": doped, "doped-teacher-ilkd": doped.with_(**ILKD),
            "kp-teacher-ilkd-matched": matched.with_(**ILKD), "distil-half": half.with_(distill_kl=1.0)}
    # the light budget: 1/(T / share) of the full run; the warm-up keeps its share of the run (100 of
    # 2,178 steps, so 3 of the light run's 72), the anneal its share of the epochs
    warm = max(1, round(teacher.warmup_steps * LIGHT_SHARE / T))
    arms = {}
    for arm, config in full.items():
        arms[f"{arm}-full"] = config
        if arm != "kp-scratch":
            c = light(config).with_(warmup_steps=warm)
            if c.doping:
                c = c.with_(anneal_start=0.1, anneal_end=0.75, anneal_every=ANNEAL_EVERY["light"])
            arms[f"{arm}-light"] = c
    return arms


def lstm_converged(doped, distill):
    """Doped KP at the course's 20x (`doped`, the course's doped-kp arm) from the converged `small`
    teacher of the run's seed: without distillation, with ILKD (`distill`, the whole-model study's
    weights) and with the KL term alone; on the light budget and the course's (its 2 epochs of
    500,000 tokens)."""
    course = doped.with_(teacher="@small")        # anneal 0.1 -> 1.5 of 2 epochs
    out = {}
    for arm, extra in (("doped-kp-teacher", {}), ("doped-kp-teacher-ilkd", distill),
                       ("doped-kp-teacher-kl", dict(distill_kl=1.0))):
        out[f"{arm}-course"] = course.with_(**extra)
        # 232 steps of 20 x 20 tokens: S re-masked every 6, about 25 times over epochs 0.1 to 0.75
        out[f"{arm}-light"] = light(course.with_(**extra)).with_(anneal_start=0.1, anneal_end=0.75, anneal_every=6)
    return out


def quick_transformer(config, shrink, tokens):
    """The --quick version of a transformer-study arm: the width divided by `shrink` (and the
    teacher "@NAME" becomes "@NAME-quick", that shrinking of NAME, `quick_teacher`), a slice of
    `tokens` of the training split (each budget its share of them: the light budget a tenth,
    the LSTM's course budget 500,000 / 929,590), 10,000 evaluation tokens; S re-masked every step."""
    share = config.train_tokens / PTB_TRAIN_TOKENS if config.train_tokens else 1.0
    changes = dict(hidden=max(8, config.hidden // shrink), train_tokens=max(1_000, int(tokens * share)),
                   eval_tokens=10_000, name=config.name + "-quick")
    if config.teacher.startswith("@"):
        changes["teacher"] = config.teacher + QUICK_SUFFIX
    if config.doping or config.structure == "prune":
        changes["anneal_every"] = 1
    if config.model == "transformer":
        changes["warmup_steps"] = min(config.warmup_steps, 5)
    return config.with_(**changes)


QUICK_SUFFIX = "-quick"


# Each family's teacher, against whose dense model its arms' whole-model compression is counted (the
# LSTM's gate matrices are counted against the teacher's too, as every LSTM study counts them)
TEACHER_OF = {"kron-transformer": "transformer-course", "transformer-cma": "transformer-course",
              "lstm-converged": "small"}


@functools.lru_cache(maxsize=None)
def _teacher_report(config, vocab_size):
    from dkp.training.evaluate import model_report
    from dkp.training.loop import build_model
    return model_report(build_model(config, vocab_size, 0))


def size_against_teacher(teacher):
    """A function of a run's record giving the whole model's parameters and bytes (embedding
    included, S's non-zeros counted) and its compression against `teacher` (a family's TEACHER_OF
    config, or its quick version) stored dense (parameters and bytes), the teacher's parameter count
    beside them."""

    def size(run):
        n_params, n_bytes = run["model"]["n_params"], run["model"]["n_bytes"]
        vocab_size = next(p["shape"][0] for p in run["model"]["parts"] if p["part"] == "embed")
        report = _teacher_report(teacher, vocab_size)
        return {"n_params": int(n_params), "n_bytes": int(n_bytes), "teacher_params": int(report["n_params"]),
                "compression": report["n_params"] / n_params, "byte_compression": report["n_bytes"] / n_bytes}
    return size


def quick_teacher(name, shrink, tokens):
    """The config of the teacher "@NAME": config NAME; for "@NAME-quick", NAME's quick version (shrunk as
    `quick_transformer` shrinks its students, on the whole quick slice, at most 3 epochs)."""
    if not name.endswith(QUICK_SUFFIX):
        return get_config(name)
    config = get_config(name[:-len(QUICK_SUFFIX)])     # at most 3 epochs (the LSTM's 13 would take a minute)
    return quick_transformer(config, shrink, tokens).with_(epochs=min(config.epochs, 3), decay_after=min(config.decay_after, 1),
                                           name=name)
