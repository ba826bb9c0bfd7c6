"""The training configuration: one frozen dataclass whose every field declares its default, its help
text and its command-line flag once (`option`), and the named configurations (Zaremba et al.'s
LSTMs small / medium / large, a tiny one for demos, and two transformers). `dkp.training.flags`
builds `train`'s flags from the fields; adding a field is this one edit. A field added later
defaults to what the code did before it existed, so a stored config keeps its meaning
(`normalized`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from dkp.core.transformer import GPT2_INIT


def option(default, help, *, flag=None, choices=None, check=None, metavar=None, needs=None, group="training",
           negatable=False):
    """A config field that declares its own command-line flag: its help text; the flag's name where
    it is not --FIELD-NAME; its choices; `check`, a function that turns the flag's text into a value
    or raises ValueError saying what was expected; and `needs`, (predicate on the final config, why),
    a flag that changes nothing unless the predicate holds (passing it otherwise is an error). A
    boolean's flag sets the opposite of its default; `negatable`: it comes in two forms, --FLAG and
    --no-FLAG (for a switch the named configs set either way)."""
    return field(default=default, metadata=dict(help=help, flag=flag, choices=choices, check=check, metavar=metavar,
                                                 needs=needs, group=group, negatable=negatable))


def _number(kind, low=None, high=None, low_open=False, high_open=False, what=None):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise ValueError(f"expected {what or kind.__name__}, got {text!r}") from None
        if (low is not None and (v <= low if low_open else v < low)) or \
                (high is not None and (v >= high if high_open else v > high)):
            raise ValueError(f"expected {what}, got {text!r}")
        return v
    return parse


POSITIVE_INT = _number(int, 1, what="a positive whole number")
COUNT = _number(int, 0, what="a whole number >= 0")
POSITIVE = _number(float, 0.0, low_open=True, what="a positive number")
NON_NEGATIVE = _number(float, 0.0, what="a number >= 0")
PROBABILITY = _number(float, 0.0, 1.0, high_open=True, what="a probability in [0, 1)")
DENSITY = _number(float, 0.0, 1.0, low_open=True, what="a density in (0, 1]")
AT_LEAST_ONE = _number(float, 1.0, what="a factor >= 1")

DOPED = (lambda c: c.doping > 0, "it acts on the sparse overlay S, and --doping is 0 (no S)")
ANNEALED = (lambda c: c.doping > 0 or c.structure == "prune",
            "only S (--doping) or pruning (--structure prune) is annealed")
DROPPING = (lambda c: c.cmr_p > 0, "co-matrix dropout is off (--cmr-p is 0)")
WARMED = (lambda c: c.dense_warmup > 0, "it acts at the switch from the dense warm-up, and --dense-warmup is 0")
FROM_DENSE = (lambda c: c.dense_warmup > 0 or bool(c.teacher),
              "it acts at the switch from a dense model: give --teacher or --dense-warmup")
VOCAB = (lambda c: c.vocab_structure != "dense", "the embedding and softmax stay dense (--vocab-structure dense)")
TRANSFORMER = (lambda c: c.model == "transformer", "only --model transformer has it")
ZAREMBA = (lambda c: c.lr_schedule == "zaremba", "--lr-schedule cosine sets every step's learning rate itself")


@dataclass(frozen=True)
class Config:
    name: str = option("custom", "the configuration's name", flag=False)
    model: str = option("lstm", "the language model: Zaremba's LSTM, or a decoder-only transformer (GPT-2's shape)",
                        choices=("lstm", "transformer"), group="model")
    layers: int = option(2, "LSTM layers (transformer blocks)", check=POSITIVE_INT, group="model")
    hidden: int = option(200, "units per LSTM layer (the transformer's width)", check=POSITIVE_INT, group="model")
    dropout: float = option(0.0, "dropout on the non-recurrent connections (the transformer's: on the embedding, "
                                 "the attention weights and each residual branch)", check=PROBABILITY, group="model")
    init_scale: float = option(0.1, "weights start uniform in [-s, s]", check=POSITIVE, metavar="S", group="model")
    heads: int = option(4, "attention heads (they split --hidden)", check=POSITIVE_INT, needs=TRANSFORMER,
                        group="model")
    block_size: int = option(128, "the longest context, in tokens (learned positions); --bptt must not pass it",
                             check=POSITIVE_INT, metavar="N", needs=TRANSFORMER, group="model")
    tie: bool = option(False, "tie the softmax matrix to the embedding (one V x H matrix)", needs=TRANSFORMER,
                       negatable=True, group="model")
    epochs: int = option(13, "total epochs", check=POSITIVE_INT)
    bptt: int = option(20, "steps of a backpropagation-through-time window", check=POSITIVE_INT)
    clip: float = option(5.0, "global gradient-norm clip", check=POSITIVE)
    lr: float = option(1.0, "learning rate", check=POSITIVE)
    lr_decay: float = option(1.0, "the learning rate is divided by this each epoch after --decay-after epochs",
                             check=AT_LEAST_ONE, needs=ZAREMBA)
    decay_after: int = option(0, "epochs at the full learning rate", check=COUNT, needs=ZAREMBA)
    lr_schedule: str = option("zaremba", "the learning rate's schedule: Zaremba's, constant within an epoch and "
                                         "divided by --lr-decay after --decay-after epochs; or linear warm-up over "
                                         "--warmup-steps, then cosine decay to a tenth of --lr at the last step",
                              choices=("zaremba", "cosine"))
    warmup_steps: int = option(0, "(cosine schedule) steps of linear warm-up", check=COUNT, metavar="N",
                               needs=(lambda c: c.lr_schedule == "cosine", "only --lr-schedule cosine warms up"))
    batch: int = option(20, "training batch (rows trained side by side)", check=POSITIVE_INT)
    eval_batch: int = option(10, "evaluation batch", check=POSITIVE_INT)
    optimizer: str = option("sgd", "sgd (Zaremba's), adam, or adamw (Adam with decoupled weight decay)",
                            choices=("sgd", "adam", "adamw"))
    weight_decay: float = option(0.0, "(adamw) each step, weight matrices and embeddings shrink by lr x this",
                                 check=NON_NEGATIVE, needs=(lambda c: c.optimizer == "adamw",
                                                            "only --optimizer adamw decays weights"))
    level: str = option("word", "PTB at the word or the character level", choices=("word", "char"))
    train_tokens: int = option(0, "train on the first N tokens of the train split only (0: all of it)", check=COUNT,
                               metavar="N")
    eval_tokens: int = option(0, "evaluate on the first N tokens of the valid and test splits (0: all)", check=COUNT,
                              metavar="N")
    # Structured LSTM gate matrices (dkp.compression.structures), S's non-zeros counted.
    structure: str = option("dense", "kp: Kronecker product, lmf: low rank, hmd: hybrid, prune: magnitude pruning",
                            choices=("dense", "kp", "lmf", "hmd", "prune"), group="compression of the LSTM gate matrices")
    compression: float = option(1.0, "target compression factor of each gate matrix", check=AT_LEAST_ONE,
                                needs=(lambda c: c.structure != "dense", "the gate matrices are dense (--structure dense)"),
                                group="compression of the LSTM gate matrices")
    kp_rank: int = option(1, "number of Kronecker products summed", check=POSITIVE_INT,
                          needs=(lambda c: c.structure == "kp", "only --structure kp has Kronecker factors"),
                          group="compression of the LSTM gate matrices")
    kp_split: str = option("rank", "Kronecker factor shapes: the largest reachable rank (rank, the papers') or the "
                                   "fewest multiply-adds (flops, faster)", choices=("rank", "flops"),
                           needs=(lambda c: c.structure == "kp", "only --structure kp has Kronecker factors"),
                           group="compression of the LSTM gate matrices")
    # Doping (dkp.compression.anneal): S starts dense; its density (and, for "prune", the weights')
    # follows the cubic schedule from 1 at `anneal_start` to its target at `anneal_end` (epochs),
    # re-masked every `anneal_every` steps, then frozen.
    doping: float = option(0.0, "final density of the sparse overlay S (kp, lmf, hmd), e.g. 0.01",
                           check=_number(float, 0.0, 1.0, what="a density in [0, 1]"), metavar="DENSITY",
                           needs=(lambda c: c.doping == 0 or c.structure in ("kp", "lmf", "hmd"),
                                  "S overlays a kp, lmf or hmd structure"),
                           group="compression of the LSTM gate matrices")
    anneal_start: float = option(0.0, "start of the density anneal", check=NON_NEGATIVE, metavar="EPOCH",
                                 needs=ANNEALED, group="compression of the LSTM gate matrices")
    anneal_end: float = option(1.0, "end of the density anneal", check=NON_NEGATIVE, metavar="EPOCH",
                               needs=ANNEALED, group="compression of the LSTM gate matrices")
    anneal_every: int = option(50, "steps between two re-maskings during the anneal", check=POSITIVE_INT,
                               needs=ANNEALED, group="compression of the LSTM gate matrices")
    anneal_s: bool = option(True, "keep S dense for the whole run (the control of an anneal)", flag="--no-anneal",
                            needs=DOPED, group="compression of the LSTM gate matrices")
    dense_warmup: float = option(0.0, "train dense this long (the teacher), then compress every matrix from it; doped: "
                                      "S starts as the residual W - nearest structured matrix", check=NON_NEGATIVE,
                                 metavar="EPOCHS", group="compression of the LSTM gate matrices")
    teacher: str = option("", "a trained dense model's checkpoint (its config's full recipe, e.g. python -m dkp "
                              "train --config small --out DIR: DIR/checkpoint.npz) to start from: every matrix the "
                              "config compresses is compressed from it before the first step, and with --distill-* "
                              "it teaches", metavar="PATH", group="compression of the LSTM gate matrices")
    teacher_blocks: str = option("", "with --teacher: the teacher's blocks (the LSTM's layers) the student keeps, in "
                                     "order, e.g. 0,2 for every other one of 4 (DistilGPT2's student); the student's "
                                     "--layers is their number", metavar="LIST",
                                 needs=(lambda c: bool(c.teacher), "it picks blocks of --teacher's model"),
                                 group="compression of the LSTM gate matrices")
    lr_restart: bool = option(False, "start the learning-rate schedule again at the switch (a whole number of epochs of "
                                     "--dense-warmup)", needs=WARMED, group="compression of the LSTM gate matrices")
    # The embedding and the softmax matrix (both V x H), compressed from the dense warm-up's.
    vocab_structure: str = option("dense", "how both V x H matrices are compressed (from the dense model of "
                                           "--teacher or --dense-warmup; kp, KroneckerBERT's A kron one-row B, "
                                           "also from scratch)",
                                  choices=("dense", "groupreduce", "svd", "prune", "kp"),
                                  needs=(lambda c: FROM_DENSE[0](c) or c.vocab_structure == "kp", FROM_DENSE[1]),
                                  group="compression of the embedding and the softmax (from a dense warm-up)")
    vocab_compression: float = option(1.0, "their compression factor (parameters; for kp the length n of B's one "
                                           "row, a whole number dividing the width)", check=AT_LEAST_ONE, needs=VOCAB,
                                      group="compression of the embedding and the softmax (from a dense warm-up)")
    vocab_groups: int = option(10, "(groupreduce) frequency groups", check=POSITIVE_INT,
                               needs=(lambda c: c.vocab_structure == "groupreduce", "only groupreduce has groups"),
                               group="compression of the embedding and the softmax (from a dense warm-up)")
    # Distillation from the dense warm-up's model, frozen at the switch (the teacher).
    distill_kl: float = option(0.0, "weight of KL(teacher || student) of the outputs", check=NON_NEGATIVE,
                               metavar="WEIGHT", needs=FROM_DENSE, group="distillation from the dense warm-up's model")
    distill_hidden: float = option(0.0, "weight of the mean squared difference of the LSTM layers' hidden states (the transformer blocks' outputs)",
                                   check=NON_NEGATIVE, metavar="WEIGHT", needs=FROM_DENSE,
                                   group="distillation from the dense warm-up's model")
    distill_embed: float = option(0.0, "(transformer) weight of the mean squared difference of the embedding's output",
                                  check=NON_NEGATIVE, metavar="WEIGHT", needs=FROM_DENSE,
                                  group="distillation from the dense warm-up's model")
    distill_attn: float = option(0.0, "(transformer) weight of the mean squared difference of each block's attention "
                                      "scores q k^T / sqrt(d), over the entries the causal mask leaves visible",
                                 check=NON_NEGATIVE, metavar="WEIGHT", needs=FROM_DENSE,
                                 group="distillation from the dense warm-up's model")
    # Co-matrix dropout on S during training (dkp.compression.cmr.cmr_probability for the schedules).
    cmr_p: float = option(0.0, "co-matrix dropout probability on S", check=PROBABILITY, needs=DOPED,
                          group="co-matrix dropout")
    cmr_variant: str = option("output", "what is dropped: entries of S x (output), the whole S x (branch), entries "
                                        "of S (connect)", choices=("output", "branch", "connect"), needs=DROPPING,
                              group="co-matrix dropout")
    cmr_schedule: str = option("constant", "p throughout (constant), only once S's density <= --cmr-threshold, or "
                                           "growing as S empties", choices=("constant", "threshold", "density"),
                               needs=DROPPING, group="co-matrix dropout")
    cmr_threshold: float = option(0.1, "(threshold schedule) the density below which dropout acts", check=DENSITY,
                                  metavar="DENSITY",
                                  needs=(lambda c: c.cmr_p > 0 and c.cmr_schedule == "threshold",
                                         "only --cmr-schedule threshold has a threshold"), group="co-matrix dropout")
    cmr_rescale: bool = option(True, "do not divide the kept part of S by 1 - p", flag="--no-cmr-rescale",
                               needs=DROPPING, group="co-matrix dropout")

    def with_(self, **changes):
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}; known: {[f.name for f in fields(self)]}")
        return replace(self, **changes)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def check_model(config):
    """Validate the model fields of a config, with errors that name the flag."""
    if config.model not in ("lstm", "transformer"):
        raise ValueError(f"model must be 'lstm' or 'transformer', got {config.model!r}")
    if config.model == "transformer":
        if config.bptt > config.block_size:
            raise ValueError(f"--bptt {config.bptt} is more than --block-size {config.block_size}: a transformer's "
                             f"training window is its context, and it has positions for --block-size tokens")
        if config.hidden % config.heads:
            raise ValueError(f"--heads {config.heads} must divide --hidden {config.hidden} (each head takes "
                             f"hidden / heads features)")
    elif config.tie:
        raise ValueError("--tie: the LSTM's softmax is not tied to its embedding (only --model transformer ties)")


def normalized(config_dict):
    """A stored config in this code's terms: fields added since it was written take their defaults,
    which is what the code that wrote it did (so results stay comparable across versions)."""
    return Config.from_dict(config_dict).to_dict()


CONFIGS = {
    # Zaremba, Sutskever & Vinyals (2014), "non-regularized" / "medium" / "large".
    "small": Config("small", layers=2, hidden=200, dropout=0.0, init_scale=0.1, epochs=13, bptt=20, clip=5.0,
                    lr_decay=2.0, decay_after=4),
    "medium": Config("medium", layers=2, hidden=650, dropout=0.5, init_scale=0.05, epochs=39, bptt=35, clip=5.0,
                     lr_decay=1.2, decay_after=6),
    "large": Config("large", layers=2, hidden=1500, dropout=0.65, init_scale=0.04, epochs=55, bptt=35,
                    clip=10.0, lr_decay=1.15, decay_after=14),
    # One small layer: a full pass over PTB's train split in about a minute on a 2-core laptop.
    "tiny": Config("tiny", layers=1, hidden=64, dropout=0.0, init_scale=0.1, epochs=1, bptt=20, clip=5.0,
                   lr_decay=2.0, decay_after=4),
    # Transformers (dkp.core.transformer), trained as nanoGPT trains GPT-2: AdamW, linear warm-up then
    # cosine decay, gradient-norm clip 1 on the mean loss, GPT-2's init (std 0.02), tied softmax.
    # tiny: two narrow blocks on a slice of PTB, for tests and notebooks (seconds).
    "transformer-tiny": Config("transformer-tiny", model="transformer", layers=2, hidden=32, heads=2, block_size=32,
                               tie=True, dropout=0.0, init_scale=GPT2_INIT, epochs=1, bptt=32, clip=1.0,
                               optimizer="adamw", lr=3e-3, weight_decay=0.1, lr_schedule="cosine", warmup_steps=10,
                               train_tokens=50_000, eval_tokens=10_000),
    # small: all of PTB, sized for about an hour on 2 cores. Measured with one BLAS thread on a 2-core
    # machine that two other training runs kept busy (40 steps, the process's CPU time): 2,724 words/s
    # at width 256 (3,901 at 200); two threads gave the LSTM 1.6x, so 12 epochs (11.1M words) take
    # about 45-55 minutes. A 2 x 200 tied model, AdamW lr 1e-3 cosine, dropout 0.2, 3 epochs reached
    # 190.6 validation perplexity in PyTorch, under-trained: this one is wider, trains 4x longer at
    # twice the rate, with more dropout for the longer run. Its target: validation perplexity <= 140.
    "transformer-small": Config("transformer-small", model="transformer", layers=2, hidden=256, heads=4,
                                block_size=128, tie=True, dropout=0.3, init_scale=GPT2_INIT, epochs=12, bptt=128,
                                batch=20, eval_batch=10, clip=1.0, optimizer="adamw", lr=2e-3, weight_decay=0.1,
                                lr_schedule="cosine", warmup_steps=200),
    # course: the teacher of the transformer study (data/results/transformer/PLAN.md): 4 blocks of width
    # 128, context 64, 3 epochs of all of PTB; about 8 minutes on one BLAS thread with the other core busy.
    "transformer-course": Config("transformer-course", model="transformer", layers=4, hidden=128, heads=4,
                                 block_size=64, tie=True, dropout=0.1, init_scale=GPT2_INIT, epochs=3, bptt=64,
                                 batch=20, eval_batch=10, clip=1.0, optimizer="adamw", lr=2e-3, weight_decay=0.1,
                                 lr_schedule="cosine", warmup_steps=100),
}


def get_config(name):
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"config must be one of {sorted(CONFIGS)}, got {name!r}") from None
