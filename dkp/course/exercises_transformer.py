"""The exercises of notebook 11 (the transformer by hand): the keys the causal mask leaves visible,
the attention softmax's gradient, the parameters of one block, the Kronecker factors of q alone; and
of notebook 12 (the Kronecker transformer): what the nearest Kronecker product of a small matrix
keeps, the size of KroneckerBERT's embedding, and what distillation did on the light budget in the
committed runs. Each reference is computed with dkp's own functions (causal_mask, attend_backward,
the model builder, the gate factory the command line's flags choose, Van Loan's rearrangement, the
study's records), with the hints for the common wrong answers."""
from __future__ import annotations

import numpy as np

from dkp.core.attention import attend, attend_backward, causal_mask
from dkp.compression.compress import rearrange
from dkp.compression.shapes import vocab_kron_factors
from dkp.course.exercise_protocol import (ANY, Exercise, Near, Reference, Unavailable, integer, number, pair,
                                          part_hints, vector)
from dkp.course.notebook import repo_root
from dkp.course.exercises_foundations import ptb
from dkp.training.configs import get_config
from dkp.training.loop import build_model

# --- 11.1 · the causal mask --------------------------------------------------------------------------

CACHED = 20                                          # positions in the key/value cache before one new token


def visible_keys():
    """(visible (query, key) pairs of a window of transformer-tiny's block_size tokens, the keys one
    new token sees after CACHED positions of cache), from causal_mask."""
    T = get_config("transformer-tiny").block_size
    window = int(np.count_nonzero(~causal_mask(T, T)))
    new = int(np.count_nonzero(~causal_mask(1, CACHED + 1)))
    return Reference((window, new), rtol=0, mistakes=[
        ((T * T, ANY), "that counts every pair: the mask hides the keys after each query"),
        ((T * (T - 1) // 2, ANY), "that is the number of masked pairs, T (T - 1) / 2; each query also sees its "
                                  "own key, so the diagonal is visible"),
        ((ANY, CACHED), "the new token reads its own key too: the cache's keys and its own")],
        otherwise=part_hints({0: "query i sees keys 0..i: count them over i = 0..T-1",
                              1: "the new token sits at the position after the cache and sees every earlier key"}))


# --- 11.2 · the attention softmax's gradient ---------------------------------------------------------

SCORES = np.array([0.2, -1.0, 0.5, 1.3])            # query 3's scores over its visible keys 0..3
UPSTREAM = np.array([1.0, 0.0, -2.0, 0.5, 3.0, -1.0])  # d loss / d weight, for all 6 keys of the window


def _score_gradient_by_dkp():
    """d loss / d scores of query 3 in a window of 6 tokens, from dkp's attend_backward: one head of
    size d = 1 (scale 1), keys k = the scores and query 3's q = 1, so that its scores are SCORES over
    keys 0..3; values v = UPSTREAM and an upstream dy of 1 at query 3 only, so that d loss / d weight
    = dy v^T = UPSTREAM; then dk = dscores^T q is query 3's row of dscores."""
    S, T = len(UPSTREAM), len(UPSTREAM) - len(SCORES) + 1   # queries 3, 4, 5 over keys 0..5
    k = np.zeros((1, 1, S, 1))
    k[0, 0, :len(SCORES), 0] = SCORES
    q = np.zeros((1, 1, T, 1))
    q[0, 0, 0, 0] = 1.0                                # query 3 is the window's first query here
    v = UPSTREAM.reshape(1, 1, S, 1)
    _, cache = attend(q, k, v)
    dy = np.zeros((1, 1, T, 1))
    dy[0, 0, 0, 0] = 1.0
    _, dk, _ = attend_backward(dy, cache)
    return dk[0, 0, :, 0]


def softmax_gradient():
    ds = _score_gradient_by_dkp()
    a = np.exp(SCORES - SCORES.max())
    a /= a.sum()
    g = UPSTREAM[:len(SCORES)]
    pad = np.zeros(len(UPSTREAM) - len(SCORES))
    return Reference(ds, atol=1e-9, rtol=1e-6, mistakes=[
        (np.concatenate([a * g, pad]), "the softmax couples the row: subtract the weighted mean sum_k a_k g_k "
                                       "from g before multiplying by a"),
        (np.concatenate([a * (1 - a) * g, pad]), "that is the diagonal of the softmax's Jacobian only; "
                                                 "d a_j / d s_l = a_j (delta_jl - a_l) couples every key"),
        (np.concatenate([g - np.dot(a, g), pad]), "multiply by a_j: ds_j = a_j (g_j - sum_k a_k g_k)"),
        (np.concatenate([ds[:len(SCORES)], UPSTREAM[len(SCORES):]]), "keys 4 and 5 are masked: their weights are "
                                                                      "0 whatever their scores, so their gradients "
                                                                      "are 0")],
        otherwise="ds_j = a_j (g_j - sum_k a_k g_k) over the visible keys, a = softmax of the visible "
                  "scores; 0 for the masked ones")


# --- 11.3 · the parameters of one block -------------------------------------------------------------

def block_params():
    config = get_config("transformer-small")
    H = config.hidden
    n = sum(p.size for p in build_model(config, len(ptb().vocab), seed=0).blocks[0].params.values())
    return Reference(n, rtol=0, mistakes=[
        (12 * H * H, "that is the four matrices alone: each has a bias, and the block two LayerNorms"),
        (12 * H * H + 9 * H, "almost: the two LayerNorms have a gain and an offset of H entries each"),
        (12 * H * H + 4 * H, "almost: each matrix has a bias too (3H, H, 4H and H entries)"),
        (4 * H * H + 4 * H + 2 * H, "that is the attention half (and ln1); the MLP has two matrices, H -> 4H -> H"),
        (6 * H * H + 13 * H, "the MLP's matrices are (4H, H) and (H, 4H): 8 H^2 together"),
        (10 * H * H + 13 * H, "qkv is one (3H, H) matrix: q, k and v each have H rows")],
        otherwise="count qkv (3H, H) and proj (H, H), fc (4H, H) and proj (H, 4H), their biases, and the "
                  "gain and offset of the block's two LayerNorms")


# --- 11.4 · the Kronecker factors of q alone ---------------------------------------------------------

def query_factors():
    """The factor shapes of W_q, the first H rows of transformer-small's Kronecker qkv matrix at
    --structure kp --compression 4 (the gate factory the trainer uses): A's first m1 / 3 rows and B."""
    config = get_config("transformer-small").with_(structure="kp", compression=4)
    H = config.hidden
    W = build_model(config, len(ptb().vocab), seed=0).matrices["blocks.0.attn.qkv"]
    (m1, n1), (m2, n2) = W.factors
    if m1 % 3:
        raise AssertionError(f"A has {m1} rows, not a multiple of 3: q is not a product of its own")
    A, B = W.params["A"][0], W.params["B"][0]
    assert np.array_equal(W.to_dense()[:H], np.kron(A[:m1 // 3], B))
    solution = ((m1 // 3, n1), (m2, n2))
    return Reference(solution, rtol=0, mistakes=[
        (((m1, n1), (m2, n2)), "those are the factors of the whole qkv matrix; q is its first H rows, a third "
                               "of A's block rows"),
        (((H, n1), (m2, n2)), "q is W's first H rows, which are A's first H / m2 rows (each row of A makes m2 "
                              "rows of W)"),
        (((m2, n2), (m1 // 3, n1)), "A comes first: W = A ⊗ B, and A's rows index the block rows")],
        otherwise=part_hints({0: "rows i m2 + k of W with i < m1 / 3 make q: A's first m1 / 3 rows",
                              1: "B stays whole: each block row of W is a row of A times all of B"}))


# --- 12.1 · what the nearest Kronecker product keeps -------------------------------------------------

# W = A kron B + a little of another product: 4 x 4, factors (2, 2) and (2, 2)
KEEP_W = (np.kron([[1.0, 2.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]])
          + 0.5 * np.kron([[0.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]))
KEEP_FACTORS = ((2, 2), (2, 2))


def kept_share():
    """The share of ||W||_F^2 the nearest A (2x2) kron B (2x2) keeps: s_1^2 / sum s_k^2 of R(W)."""
    s = np.linalg.svd(rearrange(KEEP_W, KEEP_FACTORS), compute_uv=False)
    plain = np.linalg.svd(KEEP_W, compute_uv=False)
    share = float(s[0] ** 2 / np.sum(s ** 2))
    return Reference(share, rtol=1e-4, mistakes=[
        (Near(float(s[0] / np.sum(s)), 1e-4), "square the singular values: ||W||_F^2 is the sum of their squares"),
        (Near(float(np.sqrt(1 - share)), 1e-4), "that is the relative error ||W - A kron B|| / ||W||; the share "
                                                 "kept is 1 minus its square"),
        (Near(float(plain[0] ** 2 / np.sum(plain ** 2)), 1e-4), "those are W's own singular values (its best rank-1 "
                                                                 "matrix); rearrange W first: R(W)'s rank 1 is W's "
                                                                 "nearest Kronecker product")],
        otherwise="rearrange W (dkp.compression.compress.rearrange), take its singular values s, and give s_1^2 / sum s^2")


# --- 12.2 · KroneckerBERT's embedding -------------------------------------------------------------------

EMBED_SHAPE, EMBED_ROW = (10_000, 128), 16


def embedding_size():
    """(parameters, compression) of the (10,000 x 128) embedding as A kron B, B one row of 16."""
    (V, k), (_, n) = vocab_kron_factors(EMBED_SHAPE, EMBED_ROW)
    params = V * k + n
    dense = EMBED_SHAPE[0] * EMBED_SHAPE[1]
    return Reference((params, dense / params), rtol=1e-4, mistakes=[
        ((V * k, ANY), "B's one row is stored too: its 16 numbers"),
        ((V * n + k, ANY), "A has H / n = 8 columns, B the n = 16 numbers of its one row: A kron B is "
                           "(V x 8) kron (1 x 16) = V x 128"),
        ((ANY, Near(float(n), 1e-9)), "close, but count B's 16 numbers in the denominator: 1,280,000 / (80,000 + 16)")],
        otherwise=part_hints({0: "A (V x H/n) plus B (1 x n)", 1: "V H over that count"}))


# --- 12.3 · what distillation did on the light budget ----------------------------------------------------

def _light_values(arm):
    from dkp.study import catalog
    from dkp.study import report as study_report
    from dkp.study.plans import transformer
    rec = study_report.records(transformer.STUDY, repo_root() / catalog.TRANSFORMER_OUT)
    family = catalog.TRANSFORMER[0]
    if rec.status(family, arm):
        raise Unavailable(f"data/results/transformer/{family}.json does not hold every seed of {arm} yet "
                          f"({rec.status(family, arm)})")
    return rec.values(family, arm, "valid")


def light_distillation():
    plain, ilkd = (np.mean(_light_values(a)) for a in ("kp-teacher-light", "kp-teacher-ilkd-light"))
    diff = float(ilkd - plain)
    return Reference(diff, atol=1e-6, rtol=1e-6, mistakes=[
        (Near(-diff, 1e-6), "the sign: the distilled student's mean minus the undistilled one's"),
        (Near(float(ilkd / plain - 1), 1e-6), "give the difference of the means in perplexity, not their ratio")],
        otherwise="mean final validation perplexity of kp-teacher-ilkd-light minus that of kp-teacher-light")


EXERCISES = [
    Exercise("11.1", pair(integer(), integer(), "(window_pairs, new_token_keys)"), visible_keys),
    Exercise("11.2", vector(len(UPSTREAM), f"an array of the {len(UPSTREAM)} score gradients"), softmax_gradient),
    Exercise("11.3", integer("the number of parameters, a whole number"), block_params),
    Exercise("11.4", pair(pair(integer(), integer(), "(m1, n1)"), pair(integer(), integer(), "(m2, n2)"),
                          "((m1, n1), (m2, n2))"), query_factors),
    Exercise("12.1", number("a fraction between 0 and 1"), kept_share),
    Exercise("12.2", pair(integer(), number(), "(parameters, compression)"), embedding_size),
    Exercise("12.3", number("a difference of perplexities"), light_distillation),
]
