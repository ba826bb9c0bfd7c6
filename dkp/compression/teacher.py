"""From a trained dense model to a compressed one, and the dense model as a teacher.

The Kronecker papers on transformers (KnGPT2 and KroneckerBERT, both 2021) and GroupReduce (2018)
start from a *trained* dense model: each matrix is replaced by its nearest compressed matrix
(nearest Kronecker product by Van Loan's rearrangement and SVD; frequency-weighted group low rank for
the embedding and softmax), and the compressed model is trained on, the Kronecker papers with
intermediate-layer knowledge distillation from the dense model (the teacher).

dkp takes the teacher from a checkpoint (`config.teacher`: a dense model trained by its config's full
recipe, loaded before the first step) or trains it in the same run (`config.dense_warmup` epochs).
`DenseWarmup` is the switch, a scheduled change of the training loop: at the first step of epoch
`config.dense_warmup` (step 0 with a teacher checkpoint), `convert` compresses the dense model (`structured_from_dense` for the gate matrices, `vocab_from_dense` for the
embedding and the softmax) and, when the config asks for distillation, freezes a copy of the dense
model as the `Teacher`. It changes nothing itself: it returns a `Switch` (the new matrices by name,
the teacher), and the training loop applies it in one place (`Trainer.switch`: the model's
matrices, a fresh optimizer, the teacher), then adds the teacher's terms to each window's loss.
"""
from __future__ import annotations

import copy
from typing import NamedTuple

from dkp.compression.groupreduce import vocab_from_dense, word_frequencies
from dkp.compression.structures import structured_from_dense
from dkp.core.model import VOCAB_ROLES


class Teacher:
    """A frozen model that answers each training window with its outputs (`target`), carrying its
    own hidden state from window to window as the student does."""

    def __init__(self, model, kl_weight, hidden_weight, embed_weight=0.0, attn_weight=0.0):
        self.model, self.kl_weight, self.hidden_weight = model, float(kl_weight), float(hidden_weight)
        # a transformer's embedding output and attention scores (KroneckerBERT's layer-by-layer terms)
        self.layer_weights = ({"embed_weight": float(embed_weight), "attn_weight": float(attn_weight)}
                              if embed_weight or attn_weight else {})
        self.state = None

    def target(self, x, y, first):
        """The `DistillTarget` of window x (T, B) with targets y; `first` starts a new stream."""
        if first or self.state is None:
            self.state = self.model.zero_state(x.shape[1])
        target, self.state = self.model.teacher_outputs(x, self.state, y, self.kl_weight, self.hidden_weight,
                                                        **self.layer_weights)
        return target


def distills(config):
    return bool(config.distill_kl or config.distill_hidden or config.distill_embed or config.distill_attn)


class Switch(NamedTuple):
    """What the switch from the dense warm-up changes: the matrices that take the place of the
    model's ({name in model.matrices: matrix}) and the teacher (None without distillation)."""
    matrices: dict
    teacher: Teacher | None


class DenseWarmup:
    """The switch from a dense warm-up to the compressed model, due at step `self.step` (the first
    of epoch `config.dense_warmup`): see the module docstring. A doped gate matrix starts as the
    nearest structured matrix plus S = W - structured (S dense), so the doped model starts where the
    dense one stands."""

    def __init__(self, config, steps_per_epoch):
        self.config = config
        self.step = int(round(config.dense_warmup * steps_per_epoch))    # 0 with a teacher checkpoint

    def describe(self):
        c = self.config
        parts = [f"gate matrices {c.structure}" + (f" {c.compression:g}x" if c.structure != "dense" else "")]
        if c.vocab_structure != "dense":
            parts.append(f"embedding and softmax {c.vocab_structure} {c.vocab_compression:g}x")
        layer = (f", embedding-output weight {c.distill_embed:g}, attention-score weight {c.distill_attn:g}"
                 if c.distill_embed or c.distill_attn else "")
        teach = (f"; then distilled from the dense model (KL weight {c.distill_kl:g}, hidden-state weight "
                 f"{c.distill_hidden:g}{layer})" if distills(c) else "")
        start = f"the teacher {c.teacher}" if c.teacher else f"dense for {c.dense_warmup:g} epoch(s)"
        return f"{start}, then compressed ({', '.join(parts)}){teach}"

    def due(self, step):
        return step == self.step

    def convert(self, model, train_ids, teacher_model=None):
        """The `Switch` of the dense `model` (left as it is): each gate matrix's nearest structured
        form, the embedding and the softmax compressed with the word frequencies of `train_ids`
        when the config says so (a tied softmax is the embedding: one matrix), and, when the config
        distills, the teacher: `teacher_model` (a teacher checkpoint's own model, which may have
        more blocks than the student) or a frozen copy of `model`."""
        config, matrices = self.config, {}
        teacher = None
        if distills(config):
            frozen = teacher_model if teacher_model is not None else copy.deepcopy(model)
            frozen.set_training(False)
            teacher = Teacher(frozen, config.distill_kl, config.distill_hidden, config.distill_embed, config.distill_attn)
        freq = word_frequencies(train_ids, model.vocab_size) if config.vocab_structure != "dense" else None
        for name, M in model.matrices.items():
            if name not in VOCAB_ROLES:
                matrices[name] = structured_from_dense(config, M.to_dense())
            elif freq is not None:
                matrices[name] = vocab_from_dense(config, M.to_dense(), freq)
        return Switch(matrices, teacher)
