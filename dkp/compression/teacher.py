"""From a trained dense model to a compressed one, and the dense model as a teacher.

The Kronecker papers on transformers (KnGPT2 and KroneckerBERT, both 2021) and GroupReduce (2018)
start from a *trained* dense model: each matrix is replaced by its nearest compressed matrix
(nearest Kronecker product by Van Loan's rearrangement and SVD; frequency-weighted group low rank for
the embedding and softmax), and the compressed model is trained on, the Kronecker papers with
intermediate-layer knowledge distillation from the dense model (the teacher).

dkp trains the teacher in the same run: `DenseWarmup` is a hook of the training loop that, at the
first step of epoch `config.dense_warmup`, compresses the dense model it has trained so far
(`structured_from_dense` for the LSTM gate matrices, `vocab_from_dense` for the embedding and the
softmax) and, when the config asks for distillation, keeps a frozen copy of the dense model as
`trainer.teacher`. The loop then adds the teacher's terms to each window's loss.
"""
from __future__ import annotations

import copy

from dkp.compression.groupreduce import vocab_from_dense, word_frequencies
from dkp.compression.structures import structured_from_dense
from dkp.core.optim import make_optimizer


class Teacher:
    """A frozen model that answers each training window with its outputs (`target`), carrying its
    own hidden state from window to window as the student does."""

    def __init__(self, model, kl_weight, hidden_weight):
        self.model, self.kl_weight, self.hidden_weight = model, float(kl_weight), float(hidden_weight)
        self.state = None

    def target(self, x, y, first):
        """The `DistillTarget` of window x (T, B) with targets y; `first` starts a new stream."""
        if first or self.state is None:
            self.state = self.model.zero_state(x.shape[1])
        target, self.state = self.model.teacher_outputs(x, self.state, y, self.kl_weight, self.hidden_weight)
        return target


def distills(config):
    return bool(config.distill_kl or config.distill_hidden)


class DenseWarmup:
    """A hook that, at the first step of epoch `config.dense_warmup`, compresses the dense model
    (see the module docstring): a doped gate matrix starts as the nearest structured matrix plus
    S = W - structured (S dense), so the doped model starts where the dense one stands. The
    optimizer starts afresh (its state was for the dense parameters) at the current learning rate."""

    def __init__(self, config, steps_per_epoch):
        self.config = config
        self.step = int(round(config.dense_warmup * steps_per_epoch))

    def describe(self):
        c = self.config
        parts = [f"LSTM {c.structure}" + (f" {c.compression:g}x" if c.structure != "dense" else "")]
        if c.vocab_structure != "dense":
            parts.append(f"embedding and softmax {c.vocab_structure} {c.vocab_compression:g}x")
        teach = (f"; then distilled from the dense model (KL weight {c.distill_kl:g}, hidden-state weight "
                 f"{c.distill_hidden:g})" if distills(c) else "")
        return f"dense for {c.dense_warmup:g} epoch(s), then compressed ({', '.join(parts)}){teach}"

    def convert(self, trainer):
        model, config = trainer.model, self.config
        if distills(config):
            teacher = copy.deepcopy(model)
            teacher.set_training(False)
            trainer.teacher = Teacher(teacher, config.distill_kl, config.distill_hidden)
        for layer in model.layers:
            layer.W = structured_from_dense(config, layer.W.to_dense())
        if config.vocab_structure != "dense":
            freq = word_frequencies(trainer.train_ids, model.vocab_size)
            model.embedding = vocab_from_dense(config, model.embedding.to_dense(), freq)
            model.decoder = vocab_from_dense(config, model.decoder.to_dense(), freq)
        trainer.optimizer = make_optimizer(config.optimizer, trainer.optimizer.lr)

    def __call__(self, trainer, step):
        if step == self.step:
            self.convert(trainer)

    def state_arrays(self, trainer):
        """What a checkpoint must keep of this hook: the teacher's parameters."""
        teacher = trainer.teacher
        return {} if teacher is None else {f"teacher.{k}": v for k, v in teacher.model.params.items()}

    def restore(self, trainer, step, arrays):
        """A checkpoint taken after the switch holds the compressed model the warm-up became (and
        its teacher, whose parameters are put back here; the model's are loaded after)."""
        if step <= self.step:
            return
        self.convert(trainer)
        if distills(self.config):
            params = trainer.teacher.model.params
            missing = sorted(set(params) - {k[len("teacher."):] for k in arrays if k.startswith("teacher.")})
            if missing:
                raise KeyError(f"the checkpoint lacks the teacher's parameters {missing}")
            for k, p in params.items():
                p[...] = arrays[f"teacher.{k}"]
