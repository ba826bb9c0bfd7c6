"""From a training config to the gate matrices of its LSTM layers.

This module structures the LSTM gate matrices (the embedding and the softmax stay dense, as in the
doping paper, unless a dense warm-up compresses them: dkp.compression.groupreduce). It is the one
place that maps `--structure/--compression/--doping` to matrix types:

    dense   Dense
    kp      Kronecker (rank `kp_rank`), factor shapes from dkp.compression.shapes.kron_shape (its rule
            by `kp_split`: the largest reachable rank, or the fewest multiply-adds)
    lmf     LowRank, the largest rank that meets the compression
    hmd     Hybrid: dense top rows and low-rank bottom rows, half the budget each
    prune   Pruned: dense at first, pruned by magnitude to the compression along the cubic schedule

With `doping` > 0 (kp, lmf, hmd) the matrix is wrapped in Doped: S starts dense and zero and its
density is annealed to `doping` (dkp.compression.anneal). Compression is counted honestly: the structured part
is sized so that its parameters plus the final non-zeros of S meet the target.
"""
from __future__ import annotations

import numpy as np

from dkp.compression import compress, shapes
from dkp.core.model import dense_gates, dense_vocab
from dkp.core.weights import CMR_VARIANTS, Dense, Doped, Hybrid, Kronecker, LowRank, Pruned

STRUCTURES = ("dense", "kp", "lmf", "hmd", "prune")
VOCAB_STRUCTURES = ("dense", "groupreduce", "svd", "prune", "kp")
CMR_SCHEDULES = ("constant", "threshold", "density")


def make_structured(structure, shape, compression, rng, init_scale, dtype, kp_rank=1, kp_split="rank"):
    """A freshly initialised structured matrix of `shape` meeting `compression` (a Kronecker
    product's factor shapes by `kp_split`, kron_shape's `prefer`)."""
    if structure == "kp":
        return Kronecker.init(shape, shapes.kron_shape(shape, compression, rank=kp_rank, prefer=kp_split), rank=kp_rank,
                              rng=rng, scale=init_scale, dtype=dtype)
    if structure == "lmf":
        return LowRank.init(shape, shapes.low_rank_rank(shape, compression), rng=rng, scale=init_scale,
                            dtype=dtype)
    if structure == "hmd":
        d, r = shapes.hybrid_shape(shape, compression)
        return Hybrid.init(shape, d, r, rng=rng, scale=init_scale, dtype=dtype)
    raise ValueError(f"structure must be one of {list(STRUCTURES)}, got {structure!r}")


def check_structure(config):
    """Validate the structure fields of a config, with errors that name the option."""
    if config.structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {list(STRUCTURES)}, got {config.structure!r}")
    if config.structure != "dense" and not config.compression > 1:
        raise ValueError(f"compression must be > 1 for structure {config.structure!r}, got {config.compression}")
    if config.kp_split not in shapes.PREFER:
        raise ValueError(f"kp_split must be one of {list(shapes.PREFER)}, got {config.kp_split!r}")
    if not 0.0 <= config.doping <= 1.0:
        raise ValueError(f"doping must be a density in (0, 1] (or 0 for none), got {config.doping}")
    if config.doping and config.structure not in ("kp", "lmf", "hmd"):
        raise ValueError(f"doping applies to kp, lmf and hmd, not to structure {config.structure!r}")
    if config.cmr_variant not in CMR_VARIANTS:
        raise ValueError(f"cmr_variant must be one of {list(CMR_VARIANTS)}, got {config.cmr_variant!r}")
    if config.cmr_schedule not in CMR_SCHEDULES:
        raise ValueError(f"cmr_schedule must be one of {list(CMR_SCHEDULES)}, got {config.cmr_schedule!r}")
    if not 0.0 < config.cmr_threshold <= 1.0:
        raise ValueError(f"cmr_threshold must be a density in (0, 1], got {config.cmr_threshold}")
    if config.dense_warmup < 0:
        raise ValueError(f"dense_warmup must be >= 0 epochs, got {config.dense_warmup}")
    if config.lr_restart and (not config.dense_warmup or config.dense_warmup != int(config.dense_warmup)):
        raise ValueError(f"lr_restart restarts the learning rates at the switch, which needs a whole number of "
                         f"epochs of dense_warmup (> 0), got dense_warmup={config.dense_warmup}")
    if config.dense_warmup and config.structure == "prune":
        raise ValueError("dense_warmup does not apply to structure 'prune' (pruning starts dense anyway)")
    if config.teacher and config.dense_warmup:
        raise ValueError(f"teacher {config.teacher!r} and dense_warmup {config.dense_warmup:g} are two starts from a "
                         f"dense model: give one")
    if config.teacher and config.structure == "prune":
        raise ValueError("teacher does not apply to structure 'prune' (magnitude pruning of a trained model is not "
                         "what the prune structure does)")
    from_dense = config.dense_warmup or config.teacher
    kept = teacher_blocks(config)
    if kept is not None and len(kept) != config.layers:
        raise ValueError(f"teacher_blocks {config.teacher_blocks!r} keeps {len(kept)} of the teacher's blocks, but the "
                         f"student has layers = {config.layers}: give --layers {len(kept)}")
    if config.vocab_structure not in VOCAB_STRUCTURES:
        raise ValueError(f"vocab_structure must be one of {list(VOCAB_STRUCTURES)}, got {config.vocab_structure!r}")
    if config.vocab_structure != "dense":
        if not config.vocab_compression > 1:
            raise ValueError(f"vocab_compression must be > 1 for vocab_structure {config.vocab_structure!r}, "
                             f"got {config.vocab_compression}")
        if config.vocab_structure == "kp":
            shapes.vocab_kron_factors((1, config.hidden), config.vocab_compression)   # B's one row must divide H
        elif not from_dense:
            raise ValueError(f"vocab_structure {config.vocab_structure!r} compresses trained matrices: it needs "
                             f"a teacher or dense_warmup > 0")
    if config.distill_kl < 0 or config.distill_hidden < 0:
        raise ValueError(f"distill_kl and distill_hidden must be >= 0, got {config.distill_kl} and "
                         f"{config.distill_hidden}")
    if config.distill_embed < 0 or config.distill_attn < 0:
        raise ValueError(f"distill_embed and distill_attn must be >= 0, got {config.distill_embed} and "
                         f"{config.distill_attn}")
    if (config.distill_embed or config.distill_attn) and config.model != "transformer":
        raise ValueError("distill_embed and distill_attn distil a transformer's embedding output and attention "
                         "scores: they need model 'transformer'")
    if (config.distill_kl or config.distill_hidden or config.distill_embed or config.distill_attn) and not from_dense:
        raise ValueError("distillation needs a teacher: give a teacher checkpoint or set dense_warmup > 0 (the dense "
                         "model it trains becomes the teacher)")
    if from_dense and config.structure == "dense" and config.vocab_structure == "dense" and kept is None:
        raise ValueError(f"{'teacher' if config.teacher else 'dense_warmup'} needs something to compress: a structure "
                         f"or a vocab_structure")


def vocab_factory(config):
    """A callable (role, shape, rng, init_scale, dtype) -> the embedding or softmax matrix of
    `config` at its start: KroneckerBERT's A kron one-row B for vocab_structure 'kp' trained from
    scratch, dense otherwise (the other structures, and 'kp' from a teacher or a dense warm-up, are
    compressed from the trained dense matrices: `dkp.compression.groupreduce.vocab_from_dense`)."""
    check_structure(config)
    if config.vocab_structure != "kp" or config.dense_warmup or config.teacher:
        return dense_vocab

    def make(role, shape, rng, init_scale, dtype):
        return Kronecker.init(shape, shapes.vocab_kron_factors(shape, config.vocab_compression), 1, rng, init_scale, dtype)
    return make


def _doped(config, structured, S):
    return Doped(structured, density=1.0, S=S, cmr_p=config.cmr_p, cmr_variant=config.cmr_variant,
                 cmr_rescale=config.cmr_rescale)


def teacher_blocks(config):
    """The teacher's blocks (an LSTM's layers) a student keeps, as a tuple of indices, or None (all)."""
    if not config.teacher_blocks:
        return None
    try:
        kept = tuple(int(t) for t in config.teacher_blocks.split(","))
    except ValueError:
        raise ValueError(f"teacher_blocks must be the indices of the teacher's blocks, comma-separated (e.g. 0,2), "
                         f"got {config.teacher_blocks!r}") from None
    if min(kept) < 0 or len(set(kept)) != len(kept):
        raise ValueError(f"teacher_blocks must be distinct indices >= 0, got {config.teacher_blocks!r}")
    return kept


def gate_factory(config):
    """A callable (layer, shape, rng, init_scale, dtype) -> GateMatrix for `config`. With
    `dense_warmup` or a `teacher` the model starts dense; `structured_from_dense` makes its matrices
    later."""
    check_structure(config)
    if config.structure == "dense" or config.dense_warmup or config.teacher:
        return dense_gates

    def make(layer, shape, rng, init_scale, dtype):
        if config.structure == "prune":
            return Pruned.init(shape, rng=rng, scale=init_scale, dtype=dtype)
        target = shapes.structured_target(shape, config.compression, config.doping) if config.doping else config.compression
        W = make_structured(config.structure, shape, target, rng, init_scale, dtype, config.kp_rank,
                            config.kp_split)
        if config.doping:
            # S starts fully dense and zero; dkp.compression.anneal anneals its density down to config.doping.
            W = _doped(config, W, np.zeros(shape, dtype))
        return W
    return make


def structured_from_dense(config, W):
    """The gate matrix of `config` that stands closest to the dense (m, n) array W: the nearest
    structured matrix of its kind (nearest Kronecker product, truncated SVD, or hybrid) sized as
    `gate_factory` sizes it, plus, when doped, S = W - structured, fully dense (so the two are
    equal; annealing then sparsifies S). A dense config keeps W."""
    check_structure(config)
    W = np.asarray(W)
    if config.structure == "dense":
        return Dense(W.copy())
    if config.structure not in ("kp", "lmf", "hmd"):
        raise ValueError(f"structured_from_dense needs a dense, kp, lmf or hmd config, got {config.structure!r}")
    target = shapes.structured_target(W.shape, config.compression, config.doping) if config.doping else config.compression
    if config.structure == "kp":
        split = shapes.kron_shape(W.shape, target, rank=config.kp_rank, prefer=config.kp_split)
        structured = compress.nearest_kronecker(W, split, rank=config.kp_rank)
    elif config.structure == "lmf":
        structured = compress.truncated_svd(W, shapes.low_rank_rank(W.shape, target))
    else:
        structured = compress.hybrid_from_dense(W, *shapes.hybrid_shape(W.shape, target))
    if not config.doping:
        return structured
    return compress.residual_overlay(W, structured, 1.0, cmr_p=config.cmr_p, cmr_variant=config.cmr_variant,
                                     cmr_rescale=config.cmr_rescale)
