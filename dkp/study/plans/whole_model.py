"""The whole model (data/results/whole-model/PLAN.md), declared: G1-G3 (GroupReduce on the embedding
and softmax), W1-W3 (the whole model from a teacher, with and without distillation), Q1 (8-bit
storage), and W2c, a comparison added after the runs and printed as such.

What each run records and the plan reads (`dkp.study.metrics.run_values`): the final perplexities,
the whole model's compression, the perplexity right after the switch from the teacher, and the
8-bit model's cost and bytes.
"""
from __future__ import annotations

from dkp.study.engine import Compare, EveryRun, Hypothesis, Ref
from dkp.study.report import Column, Study

G, W = "groupreduce", "whole-model"
WHOLE = "groupreduce-12x-doped-kp"


def lower(family, b, a, metric="valid", label=None):
    return Compare(Ref(family, b, metric), Ref(family, a, metric), "lower", label=label or f"{b} vs {a}")


def hypotheses():
    return [
        Hypothesis("G1", "at 6x on the embedding and softmax, GroupReduce ends lower than one truncated SVD",
                   lower(G, "groupreduce-6x", "svd-6x")),
        Hypothesis("G2", "at 6x, GroupReduce ends lower than magnitude pruning", lower(G, "groupreduce-6x", "prune-6x")),
        Hypothesis("G3", "right after the switch (no retraining), GroupReduce keeps a lower perplexity than SVD",
                   lower(G, "groupreduce-6x", "svd-6x", "switch_after", "groupreduce-6x vs svd-6x, just after the switch")),
        Hypothesis("W1", f"{WHOLE} compresses the whole model at least 10x",
                   EveryRun((Ref(W, WHOLE, "compression"),), ">=", 10.0, label="whole-model compression in every seed"),
                   reported=(Compare(Ref(W, WHOLE, "valid"), Ref(W, "dense", "valid"), "beyond",
                                     label="perplexity against dense (the teacher)"),)),
        Hypothesis("W2", "with the teacher and distillation, doped KP ends lower than from scratch at the same steps",
                   lower(W, "doped-kp-teacher-ilkd", "doped-kp")),
        Hypothesis("W2b", "(what the teacher's start alone gives) doped-kp-teacher ends lower than doped-kp",
                   lower(W, "doped-kp-teacher", "doped-kp")),
        Hypothesis("W2c", "what distillation adds to the teacher's start: doped-kp-teacher-ilkd ends lower than "
                          "doped-kp-teacher", lower(W, "doped-kp-teacher-ilkd", "doped-kp-teacher"), preregistered=False),
        Hypothesis("W3", "distillation helps the whole compressed model", lower(W, f"{WHOLE}-ilkd", WHOLE)),
        Hypothesis("Q1", "8-bit storage costs less than 1% perplexity in every run",
                   EveryRun((Ref(G, "*", "int8_cost"), Ref(W, "*", "int8_cost")), "<", 0.01,
                            label="every run's int8 validation perplexity / float's - 1")),
    ]


STUDY = Study(
    name="whole-model", families=(G, W),
    columns=(Column("embedding + softmax x", "vocab_compression"), Column("whole model x (params)", "compression"),
             Column("MB (float32)", "n_bytes", 2, 1e-6), Column("valid ppl right after the switch", "switch_after", 1),
             Column("final valid ppl", "valid"), Column("test ppl", "test"),
             Column("int8: ppl cost", "int8_cost", 2, 100, "%"), Column("int8: x (bytes)", "int8_compression", 1)),
    hypotheses=hypotheses)
