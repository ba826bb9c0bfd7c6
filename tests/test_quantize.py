"""8-bit quantization after training: the rounding bound, the storage count, and a model's copy."""
import numpy as np
import pytest

from dkp.compression import quantize as qz
from dkp.compression.groupreduce import prune_at_budget
from dkp.core.model import LanguageModel
from dkp.training.evaluate import evaluate, model_report


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 9), (130,), (1,)])
def test_rounding_is_within_half_a_step_and_keeps_zeros(shape):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(np.float32)
    a.reshape(-1)[::3] = 0.0
    q, scales = qz.quantize(a)
    assert q.dtype == np.int8 and np.abs(q).max() <= 127
    back = qz.dequantize(q, scales, a)
    rows = qz._rows(np.abs(a - back))[0]
    assert np.all(rows.max(axis=1) <= scales / 2 * (1 + 1e-6) + 1e-12)
    assert np.all(back.reshape(-1)[::3] == 0.0) and back.shape == a.shape and back.dtype == a.dtype


def test_an_all_zero_row_stays_zero():
    a = np.zeros((2, 3))
    a[1] = [1.0, -2.0, 0.5]
    np.testing.assert_array_equal(qz.fake_quantize(a)[0], 0.0)


def test_storage_counts_int8_values_and_a_scale_per_row():
    assert qz.quantized_nbytes(np.zeros((10, 6), np.float32)) == 60 + 40
    assert qz.quantized_nbytes(np.zeros(130, np.float32)) == 130 + 4 * 3      # 3 blocks of 64
    with pytest.raises(ValueError, match=r"bits must be an integer in \[2, 8\]"):
        qz.quantize(np.ones(3), bits=16)


def test_a_quantized_model_copy_costs_little_and_leaves_the_model_alone():
    model = LanguageModel(50, 8, 2, init_scale=0.5, seed=0)
    model.decoder = prune_at_budget(model.decoder.to_dense(), 2.0)
    ids = np.random.default_rng(1).integers(0, 50, 2_000)
    before = {k: v.copy() for k, v in model.params.items()}
    q = qz.quantize_model(model)
    assert all(np.array_equal(v, before[k]) for k, v in model.params.items())
    changed = [k for k in before if not np.array_equal(q.params[k], before[k])]
    assert len(changed) == len(before)
    assert evaluate(q, ids, 4, 10) == pytest.approx(evaluate(model, ids, 4, 10), rel=0.01)
    # int8 values + a float32 scale per row (per 64 for biases); the pruned decoder keeps its int32
    # CSR indices: embedding, two 32 x 16 gate matrices, the decoder's 200 entries, the biases
    nnz = model.decoder.n_params
    expected = (400 + 50 * 4) + 2 * (512 + 32 * 4) + (4 * nnz + 51 * 4) + (nnz + 50 * 4) + 2 * (32 + 4) + (50 + 4)
    assert nnz == 200 and qz.quantized_bytes(model) == expected
    assert qz.quantized_bytes(model) < model_report(model)["n_bytes"] / 2
    assert not q.decoder.to_dense()[~model.decoder.mask].any()        # pruned entries stay pruned
