"""Named training configurations: Zaremba et al.'s small / medium / large, and a tiny one for demos."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class Config:
    name: str
    layers: int
    hidden: int
    dropout: float
    init_scale: float
    epochs: int
    bptt: int
    clip: float
    lr: float = 1.0
    lr_decay: float = 1.0        # lr is divided by this each epoch after `decay_after` epochs
    decay_after: int = 0
    batch: int = 20
    eval_batch: int = 10
    optimizer: str = "sgd"       # "sgd" (Zaremba) or "adam"
    level: str = "word"          # "word" or "char"
    train_tokens: int = 0        # 0: the whole train split; N: its first N tokens
    eval_tokens: int = 0         # 0: whole valid/test splits; N: their first N tokens
    # Structured LSTM gate matrices (dkp.compression.structures): "dense", "kp", "lmf", "hmd" or "prune",
    # compressed `compression` times (S's non-zeros counted), kp as a sum of `kp_rank` products.
    structure: str = "dense"
    compression: float = 1.0
    kp_rank: int = 1
    # which Kronecker factor shapes meet the compression (dkp.compression.shapes.kron_shape's rule):
    # "rank", the largest reachable rank (the papers'), or "flops", the fewest multiply-adds
    kp_split: str = "rank"
    # Doping (dkp.compression.anneal): final density of S (0: no S). S starts dense; its density (and, for
    # "prune", the weights' density) follows the cubic schedule from 1 at epoch `anneal_start` to
    # its target at epoch `anneal_end` (fractions of an epoch allowed), re-masked every
    # `anneal_every` steps, then frozen.
    doping: float = 0.0
    anneal_start: float = 0.0
    anneal_end: float = 1.0
    anneal_every: int = 50
    # anneal_s False keeps S at its starting density (dense) for the whole run, the structured part
    # still sized for `doping`: the control against which an anneal is measured.
    anneal_s: bool = True
    # dense_warmup > 0: train a dense model for that many epochs (the teacher), then compress it
    # (dkp.compression.teacher): each gate matrix W becomes its nearest structured matrix, plus
    # S = W - structured (dense) when doped, the embedding and softmax become `vocab_structure`;
    # training goes on from there. 0: the model is compressed from its first step (S starts at 0).
    dense_warmup: float = 0.0
    # lr_restart True: the learning-rate schedule starts again at the switch (a whole number of
    # epochs of dense warm-up), so the compressed model trains at the rates a model compressed from
    # the start would, while the warm-up trains at the dense model's own rates.
    lr_restart: bool = False
    # The embedding and the softmax matrix (both V x H), compressed `vocab_compression` times from
    # the dense warm-up's matrices: "dense" (kept), "groupreduce" (frequency-grouped low rank in
    # `vocab_groups` groups), "svd" (one truncated SVD) or "prune" (magnitude pruning, mask fixed).
    vocab_structure: str = "dense"
    vocab_compression: float = 1.0
    vocab_groups: int = 10
    # Distillation from the dense warm-up's model, frozen at the switch (the teacher): the loss adds
    # distill_kl * KL(teacher || student) of the output distributions and distill_hidden * the mean
    # squared difference of each LSTM layer's hidden states.
    distill_kl: float = 0.0
    distill_hidden: float = 0.0
    # Co-matrix dropout on S during training: probability and variant ("output", "branch", "connect").
    cmr_p: float = 0.0
    cmr_variant: str = "output"
    # How p follows the anneal (dkp.compression.anneal.cmr_probability): "constant" p throughout; "threshold": p
    # only once S's density is at or below `cmr_threshold`, 0 before; "density": p grows from 0 to
    # cmr_p as S's density falls from 1 to `doping`. cmr_rescale False drops without dividing the
    # kept part by 1 - p.
    cmr_schedule: str = "constant"
    cmr_threshold: float = 0.1
    cmr_rescale: bool = True

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
}


def get_config(name):
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"config must be one of {sorted(CONFIGS)}, got {name!r}") from None
