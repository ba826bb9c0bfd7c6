"""The fused inference step (dkp.core.inference, kernels.kron_lstm_step, kernels.lstm_cell) against
`LSTMLayer.forward` on one step and against the kernels' NumPy references.

Tolerances are those of tests/test_kernels.py (max error relative to the largest reference entry):
the fused kernels sum in a different order (fastmath "reassoc") and, in float32, use a rational
tanh accurate to 3e-7, both far inside 2e-5.
"""
import os

import numpy as np
import pytest
from nojit import rerun_without_jit

from dkp.core.inference import LSTMStep
from dkp.core.lstm import LSTMLayer
from dkp.core.weights import Dense, Doped, Kronecker, LowRank
from dkp.kernels import arith, sparse
from dkp.kernels import step as fused

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def close(a, ref, dtype):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    assert a.shape == ref.shape
    err = np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-30)
    assert err < TOL[dtype], f"relative error {err:.3g}"


# (n_in, H, ((m1, n1), (m2, n2)), rank): 4H = m1*m2, n_in + H = n1*n2. Odd sizes, both
# multiplication orders (checked below), size-1 factor sides, rank 2, a lone last row of A.
CASES = [
    (3, 3, ((4, 3), (3, 2)), 1),      # 12 x 6
    (4, 5, ((5, 3), (4, 3)), 1),      # 20 x 9
    (2, 5, ((20, 7), (1, 1)), 2),     # 20 x 7, B 1x1
    (6, 7, ((1, 1), (28, 13)), 1),    # 28 x 13, A 1x1
    (9, 6, ((3, 5), (8, 3)), 2),      # 24 x 15
    (5, 7, ((7, 4), (4, 3)), 1),      # 28 x 12
    (7, 6, ((2, 13), (12, 1)), 1),    # 24 x 13
]


def test_cases_cover_both_orders():
    orders = {arith.kron_b_first(m1, n1, m2, n2) for _, _, ((m1, n1), (m2, n2)), _ in CASES}
    assert orders == {True, False}


def layer(W, n_in, H, rng, dtype):
    return LSTMLayer(W, rng.uniform(-0.5, 0.5, 4 * H).astype(dtype), n_in, H)


def kron_matrix(case, rng, dtype):
    n_in, H, factors, rank = case
    return Kronecker.init((4 * H, n_in + H), factors, rank, rng, 1.0, dtype)


def state(b, n_in, H, rng, dtype):
    x = rng.standard_normal((b, n_in)).astype(dtype)
    h = rng.uniform(-1, 1, (b, H)).astype(dtype)
    c = rng.standard_normal((b, H)).astype(dtype)
    return x, h, c


def check_against_layer(lay, rng, dtype, batches=(1, 2, 5)):
    n_in, H = lay.input_size, lay.hidden_size
    for b in batches:
        x, h, c = state(b, n_in, H, rng, dtype)
        _, (h_ref, c_ref), _ = lay.forward(x[None], (h, c))
        for max_fused in (0, 8):          # the unfused path and the fused kernel
            h1, c1 = LSTMStep(lay, max_fused_batch=max_fused)(x, (h, c))
            assert h1.dtype == dtype and c1.dtype == dtype
            close(h1, h_ref, dtype)
            close(c1, c_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_fused_kron_step_matches_the_layer(case, dtype, rng):
    n_in, H, _, _ = case
    lay = layer(kron_matrix(case, rng, dtype), n_in, H, rng, dtype)
    assert LSTMStep(lay).kind == "fused kron"
    check_against_layer(lay, rng, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("density", [0.05, 0.3, 1.0])
def test_fused_doped_kron_step_matches_the_layer(case, density, dtype, rng):
    n_in, H, _, _ = case
    m, n = 4 * H, n_in + H
    W = Doped(kron_matrix(case, rng, dtype), density, S=rng.standard_normal((m, n)))
    check_against_layer(layer(W, n_in, H, rng, dtype), rng, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_doped_step_with_s_off_and_in_training_mode(dtype, rng):
    case = CASES[1]
    n_in, H, _, _ = case
    W = Doped(kron_matrix(case, rng, dtype), 0.2, S=rng.standard_normal((4 * H, n_in + H)), cmr_p=0.5)
    lay = layer(W, n_in, H, rng, dtype)
    x, h, c = state(3, n_in, H, rng, dtype)
    _, (h_ref, c_ref), _ = lay.forward(x[None], (h, c))      # evaluation mode: W = KP + S
    W.training = True                                          # inference ignores dropout
    for max_fused in (0, 8):
        h1, c1 = LSTMStep(lay, max_fused_batch=max_fused)(x, (h, c))
        close(h1, h_ref, dtype)
        close(c1, c_ref, dtype)
    assert W.training
    W.training, W.s_enabled = False, False                     # S switched off: KP alone
    _, (h_ref, c_ref), _ = lay.forward(x[None], (h, c))
    h1, c1 = LSTMStep(lay)(x, (h, c))
    close(h1, h_ref, dtype)
    close(c1, c_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_other_matrices_take_the_unfused_path(dtype, rng):
    n_in, H = 5, 4
    for W in (Dense.init((4 * H, n_in + H), rng, 0.5, dtype), LowRank.init((4 * H, n_in + H), 2, rng, 0.5, dtype)):
        lay = layer(W, n_in, H, rng, dtype)
        assert not LSTMStep(lay).fused
        check_against_layer(lay, rng, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequence_equals_the_layer_over_a_window(dtype, rng):
    case = CASES[4]
    n_in, H, _, _ = case
    W = Doped(kron_matrix(case, rng, dtype), 0.1, S=rng.standard_normal((4 * H, n_in + H)))
    lay = layer(W, n_in, H, rng, dtype)
    xs = rng.standard_normal((6, 2, n_in)).astype(dtype)
    h0 = np.zeros((2, H), dtype)
    hs_ref, (h_ref, c_ref), _ = lay.forward(xs, (h0, h0))
    hs, (h, c) = LSTMStep(lay).sequence(xs, (h0, h0))
    close(hs, hs_ref, dtype)
    close(c, c_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kron_lstm_step_against_its_reference(dtype, rng):
    A = rng.standard_normal((2, 6, 5)).astype(dtype)
    B = rng.standard_normal((2, 2, 3)).astype(dtype)
    S = (rng.standard_normal((12, 15)) * (rng.random((12, 15)) < 0.2)).astype(dtype)
    ip, ix, v = sparse.csr_from_dense(S)
    bias = rng.standard_normal(12).astype(dtype)
    x, h, c = state(3, 12, 3, rng, dtype)
    ref = fused.kron_lstm_step_ref(A, B, ip, ix, v, bias, x, h, c)
    # the entry point accepts factors in any layout (here Kronecker's transposed one)
    At = np.ascontiguousarray(A.transpose(0, 2, 1)).transpose(0, 2, 1)
    for got in (fused.kron_lstm_step(A, B, ip, ix, v, bias, x, h, c),
                fused.kron_lstm_step(At, B, ip, ix, v, bias, x, h, c)):
        close(got[0], ref[0], dtype)
        close(got[1], ref[1], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_cell_against_its_reference(dtype, rng):
    H = 37
    z = (rng.standard_normal((3, 4 * H)) * 6).astype(dtype)   # saturating gates too
    c = (rng.standard_normal((3, H)) * 3).astype(dtype)
    h1, c1 = fused.lstm_cell(z, c)
    h_ref, c_ref = fused.lstm_cell_ref(z.astype(np.float64), c.astype(np.float64))
    close(h1, h_ref, dtype)
    close(c1, c_ref, dtype)


def test_fast_tanh_accuracy_and_special_values():
    x = np.concatenate([np.linspace(-20, 20, 400_001), np.logspace(-30, 1, 2000), -np.logspace(-30, 1, 2000),
                        [0.0, -0.0, 1e-45]]).astype(np.float32)
    err = np.abs(fused.tanh_fast(x).astype(np.float64) - np.tanh(x.astype(np.float64)))
    assert err.max() < 4e-7
    rel = err / np.maximum(np.abs(np.tanh(x.astype(np.float64))), 1e-300)
    assert rel[np.abs(x) > 0].max() < 4e-7        # tiny inputs keep their relative accuracy
    special = fused.tanh_fast(np.array([np.nan, np.inf, -np.inf], np.float32))
    assert np.isnan(special[0])                   # NaN propagates (fastmath keeps NaN semantics)
    assert special[1] == pytest.approx(1, abs=3e-7) and special[2] == pytest.approx(-1, abs=3e-7)


def test_nan_in_the_input_reaches_the_output(rng):
    case = CASES[0]
    n_in, H, _, _ = case
    lay = layer(kron_matrix(case, rng, np.float32), n_in, H, rng, np.float32)
    x, h, c = state(1, n_in, H, rng, np.float32)
    x[0, 1] = np.nan
    h1, c1 = LSTMStep(lay)(x, (h, c))
    assert np.isnan(h1).any() and np.isnan(c1).any()


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="already the no-JIT run")
def test_inference_without_jit():
    """This module again with Numba disabled: the fused kernels' Python source gives the same results."""
    rerun_without_jit(__file__, timeout=600)
