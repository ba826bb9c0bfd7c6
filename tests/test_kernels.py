"""Every kernel against its NumPy reference (np.kron, dense matmul), on awkward shapes, both dtypes.

The same module runs once more in a subprocess with NUMBA_DISABLE_JIT=1 (test_kernels_without_jit),
so both the compiled kernels and their plain-Python source are exercised.
"""
import os

import numpy as np
import pytest
from nojit import rerun_without_jit

from dkp.core.cell import step_backward
from dkp.core.layers import dropout
from dkp.kernels import arith, cell, kron, sparse
from dkp.kernels import step as fused
from dkp.kernels import transformer as tk

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-5, np.float64: 1e-12}

# (rank, m1, n1, m2, n2): odd sizes, non-square factors, size-1 sides, ranks 1-3; together they cover
# both multiplication orders and both output layouts of the forward kernel (checked below).
KRON_CASES = [
    (1, 3, 2, 5, 4),    # B first, Y
    (2, 4, 7, 3, 2),    # A first, Y.T
    (1, 6, 4, 2, 3),    # B first, Y.T
    (1, 5, 5, 13, 6),   # A first, Y
    (3, 1, 3, 2, 1),    # size-1 sides
    (1, 7, 1, 1, 9),
    (2, 5, 3, 3, 5),
]
BATCHES = [1, 2, 5]


def close(a, ref, dtype):
    """Max error relative to the largest reference entry, under the dtype's tolerance."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    assert a.shape == ref.shape
    scale = max(np.abs(ref).max(), 1e-30) if ref.size else 1.0
    err = np.abs(a - ref).max() / scale if ref.size else 0.0
    assert err < TOL[dtype], f"relative error {err:.3g}"


def factors(case, dtype, rng, stored_transposed):
    r, m1, n1, m2, n2 = case
    A = rng.standard_normal((r, m1, n1)).astype(dtype)
    B = rng.standard_normal((r, m2, n2)).astype(dtype)
    if stored_transposed:  # the layout Kronecker keeps (see dkp.core.weights.kronecker)
        A = np.ascontiguousarray(A.transpose(0, 2, 1)).transpose(0, 2, 1)
        B = np.ascontiguousarray(B.transpose(0, 2, 1)).transpose(0, 2, 1)
    return A, B


def test_cases_cover_every_path_of_the_forward_kernel():
    paths = {(arith.kron_b_first(m1, n1, m2, n2), m1 >= m2) for _, m1, n1, m2, n2 in KRON_CASES}
    assert paths == {(True, True), (True, False), (False, True), (False, False)}


def test_numba_kernels_are_compiled_unless_disabled():
    compiled = hasattr(kron._kron_fwd, "py_func")
    assert compiled == (os.environ.get("NUMBA_DISABLE_JIT", "0") != "1")


def test_kron_costs_pick_the_cheaper_order():
    assert arith.kron_costs(520, 260, 5, 5) == (260 * 5 * (5 + 520), 520 * 5 * (260 + 5))
    assert arith.kron_b_first(520, 260, 5, 5)
    assert not arith.kron_b_first(5, 5, 520, 260)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", KRON_CASES)
@pytest.mark.parametrize("stored_transposed", [True, False])
def test_kron_forward(case, dtype, stored_transposed, rng):
    A, B = factors(case, dtype, rng, stored_transposed)
    for b in BATCHES:
        x = rng.standard_normal((b, A.shape[2] * B.shape[2])).astype(dtype)
        ref = x.astype(np.float64) @ kron.kron_dense(A.astype(np.float64), B.astype(np.float64)).T
        close(kron.kron_matmul_ref(A, B, x), ref, dtype)
        for f in (kron.kron_matmul_numba, kron.kron_matmul_blas, kron.kron_matmul):
            y = f(A, B, x)
            assert y.dtype == dtype
            close(y, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kron_forward_accumulates_into_out(dtype, rng):
    A, B = factors((2, 4, 7, 3, 2), dtype, rng, True)
    x = rng.standard_normal((3, 14)).astype(dtype)
    out = rng.standard_normal((3, 12)).astype(dtype)
    expected = out + kron.kron_matmul_ref(A, B, x)
    close(kron.kron_matmul_numba(A, B, x, out=out, accumulate=True), expected, dtype)


def test_kron_grad_ref_against_np_kron(rng):
    """The gradient oracle itself: dL/dA[k][i, p] = sum(dW * kron(E_ip, B[k])) entry by entry."""
    r, m1, n1, m2, n2 = 2, 3, 2, 2, 3
    A, B = rng.standard_normal((r, m1, n1)), rng.standard_normal((r, m2, n2))
    x, dy = rng.standard_normal((4, n1 * n2)), rng.standard_normal((4, m1 * m2))
    dW = dy.T @ x
    dA, dB = kron.kron_grad_ref(A, B, x, dy)
    for k in range(r):
        for i in range(m1):
            for p in range(n1):
                E = np.zeros((m1, n1))
                E[i, p] = 1
                assert np.isclose(dA[k, i, p], np.sum(dW * np.kron(E, B[k])))
        for q in range(m2):
            for j in range(n2):
                E = np.zeros((m2, n2))
                E[q, j] = 1
                assert np.isclose(dB[k, q, j], np.sum(dW * np.kron(A[k], E)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", KRON_CASES)
def test_kron_transpose_product_and_factor_gradients(case, dtype, rng):
    A, B = factors(case, dtype, rng, True)
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    for b in BATCHES:
        x = rng.standard_normal((b, A.shape[2] * B.shape[2])).astype(dtype)
        dy = rng.standard_normal((b, A.shape[1] * B.shape[1])).astype(dtype)
        ref = f64(dy) @ kron.kron_dense(f64(A), f64(B))              # dx = dy @ W, W built by np.kron
        close(kron.kron_matmul_t_ref(A, B, dy), ref, dtype)
        for dx in (kron.kron_matmul_t_blas(A, B, dy), kron.kron_matmul_t(A, B, dy)):
            assert dx.dtype == dtype
            close(dx, ref, dtype)
        refs = kron.kron_grad_ref(f64(A), f64(B), f64(x), f64(dy))
        for grads in (kron.kron_grad_blas(A, B, x, dy), kron.kron_grad(A, B, x, dy)):
            for g, ref, F in zip(grads, refs, (A, B)):
                assert g.shape == F.shape and g.dtype == dtype
                close(g, ref, dtype)


# --- CSR ----------------------------------------------------------------------------------------

def sparse_cases(rng):
    """(name, dense S) with awkward patterns; sizes odd and non-square."""
    m, n = 13, 7
    empty_rows = rng.standard_normal((m, n)) * (rng.random((m, n)) < 0.3)
    empty_rows[[0, 4, 5, 12]] = 0                      # first, middle and last rows empty
    one = np.zeros((m, n))
    one[6, 3] = 2.5
    return [("empty-rows", empty_rows), ("one-nonzero", one), ("full", rng.standard_normal((m, n))),
            ("all-empty", np.zeros((m, n))), ("wide", rng.standard_normal((3, 20)) * (rng.random((3, 20)) < 0.5))]


CSR_BATCHES = [1, 3, 4, 9]   # both sides of the kernels' batch switch (row-wise below 4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_csr_products_and_gradient(dtype, rng):
    for name, S in sparse_cases(rng):
        S = S.astype(dtype)
        m, n = S.shape
        indptr, indices, values = sparse.csr_from_dense(S)
        assert indices.dtype == np.int32 and indptr.dtype == np.int32
        assert np.array_equal(sparse.csr_to_dense(indptr, indices, values, S.shape), S), name
        for b in CSR_BATCHES:
            x = rng.standard_normal((b, n)).astype(dtype)
            dy = rng.standard_normal((b, m)).astype(dtype)
            S64, x64, dy64 = S.astype(np.float64), x.astype(np.float64), dy.astype(np.float64)
            for f in (sparse.csr_matmul, sparse.csr_matmul_ref):
                y = f(indptr, indices, values, x, m)
                assert y.dtype == dtype
                close(y, x64 @ S64.T, dtype)
            for f in (sparse.csr_matmul_t, sparse.csr_matmul_t_ref):
                close(f(indptr, indices, values, dy, n), dy64 @ S64, dtype)
            rows, cols = np.nonzero(S)
            for f in (sparse.csr_grad, sparse.csr_grad_ref):
                g = f(indptr, indices, x, dy)
                assert g.shape == (len(values),)
                close(g, (dy64.T @ x64)[rows, cols], dtype)
            out = rng.standard_normal((b, m)).astype(dtype)
            close(sparse.csr_matmul(indptr, indices, values, x, m, out=out.copy(), accumulate=True),
                  out + x64 @ S64.T, dtype)


def test_csr_accepts_int64_indices_and_noncontiguous_inputs(rng):
    S = rng.standard_normal((6, 5)) * (rng.random((6, 5)) < 0.5)
    indptr, indices, values = sparse.csr_from_dense(S)
    x = rng.standard_normal((5, 10))[:, ::2]          # (5, 5), not contiguous
    y = sparse.csr_matmul(indptr.astype(np.int64), indices.astype(np.int64), values, x, 6)
    close(y, x @ S.T, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_csr_scatter_writes_only_the_pattern(dtype, rng):
    S = (rng.standard_normal((9, 11)) * (rng.random((9, 11)) < 0.4)).astype(dtype)
    indptr, indices, values = sparse.csr_from_dense(S)
    out = np.full(S.shape, 7.0, dtype)
    sparse.csr_scatter(indptr, indices, values, out)
    expected = np.where(S != 0, S, dtype(7.0))
    assert np.array_equal(out, expected)
    assert np.array_equal(sparse.csr_scatter_ref(indptr, indices, values, np.full(S.shape, 7.0, dtype)), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", KRON_CASES[:4])
def test_fused_doped_kron_forward(case, dtype, rng):
    A, B = factors(case, dtype, rng, True)
    m, n = A.shape[1] * B.shape[1], A.shape[2] * B.shape[2]
    S = (rng.standard_normal((m, n)) * (rng.random((m, n)) < 0.2)).astype(dtype)
    indptr, indices, values = sparse.csr_from_dense(S)
    for b in (1, 3):
        x = rng.standard_normal((b, n)).astype(dtype)
        ref = x.astype(np.float64) @ (kron.kron_dense(A, B).astype(np.float64) + S).T
        close(fused.doped_kron_matmul_ref(A, B, indptr, indices, values, x), ref, dtype)
        close(fused.doped_kron_matmul(A, B, indptr, indices, values, x), ref, dtype)


# (B, H): a single unit, odd sizes, and a row longer than one vector register plus a remainder
CELL_SHAPES = [(1, 1), (3, 7), (5, 33)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CELL_SHAPES)
def test_cell_forward(shape, dtype, rng):
    B, H = shape
    z = (rng.standard_normal((B, 4 * H)) * 6).astype(dtype)   # beyond the fast tanh's clamp at 7.9
    rec = rng.standard_normal((B, 4 * H)).astype(dtype)
    c_prev = rng.standard_normal((B, H)).astype(dtype)
    acts, c, tc, h = cell.cell_forward_ref(z.astype(np.float64) + rec, c_prev.astype(np.float64))
    got = z.copy()
    c_out, tc_out, h_out = (np.empty((B, H), dtype) for _ in range(3))
    cell.cell_forward(got, rec, c_prev, c_out, tc_out, h_out)
    for a, ref in [(got, acts), (c_out, c), (tc_out, tc), (h_out, h)]:
        close(a, ref, dtype)
    close(cell.cell_forward_ref(z + rec, c_prev)[3], h, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CELL_SHAPES)
def test_cell_backward(shape, dtype, rng):
    """Against the kernel module's reference and against dkp.core.cell, the LSTM reference's own."""
    B, H = shape
    acts = rng.uniform(0.01, 0.99, (B, 4 * H)).astype(dtype)
    acts[:, 2 * H:3 * H] = 2 * acts[:, 2 * H:3 * H] - 1                 # g in (-1, 1)
    dh_out, dh_next, dc_next, c_prev = (rng.standard_normal((B, H)).astype(dtype) for _ in range(4))
    tc = np.tanh(rng.standard_normal((B, H))).astype(dtype)
    dz_ref, dc_ref = cell.cell_backward_ref(dh_out, dh_next, dc_next, acts, c_prev, tc)
    dz_core = np.empty_like(acts)
    i, f, g, o = np.split(acts, 4, axis=1)
    dc_core = step_backward(dz_core, dh_out + dh_next, dc_next, i, f, g, o, c_prev, tc) * f
    dz = np.empty_like(acts)
    dh, dc = dh_next.copy(), dc_next.copy()
    cell.cell_backward(dh_out, dh, dc, acts, c_prev, tc, dz)
    for a, ref in [(dz, dz_ref), (dc, dc_ref), (dh, dh_out + dh_next), (dz_core, dz_ref), (dc_core, dc_ref)]:
        close(a, ref, dtype)


# shapes (..., n) of the transformer's elementwise kernels: one entry, odd rows, a row longer than a
# vector register plus a remainder, and leading axes
ELEMENTWISE_SHAPES = [(1, 1), (3, 7), (2, 5, 33)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_gelu_forward_and_backward(shape, dtype, rng):
    x = (rng.standard_normal(shape) * 6).astype(dtype)       # past the fast tanh's clamp at 7.9 and 9.1
    x.flat[0] = 40.0 if x.size > 1 else x.flat[0]           # saturated: tanh exactly 1
    dy = rng.standard_normal(shape).astype(dtype)
    y_ref, t_ref = tk.gelu_forward_ref(x.astype(np.float64))
    y, t = tk.gelu_forward(x)
    assert y.dtype == t.dtype == dtype and y.shape == shape
    close(y, y_ref, dtype)
    close(t, t_ref, dtype)
    if x.size > 1:
        assert t.flat[0] == 1.0 and y.flat[0] == x.flat[0]
    dx = tk.gelu_backward(dy, x, t)
    assert dx.dtype == dtype
    close(dx, tk.gelu_backward_ref(dy.astype(np.float64), x.astype(np.float64), t.astype(np.float64)), dtype)
    close(tk.gelu_backward(dy.T, x.T, t.T), tk.gelu_backward_ref(dy.T, x.T, t.T), dtype)   # not contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_layernorm_forward_and_backward(shape, dtype, rng):
    H = shape[-1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    g, b = rng.uniform(0.5, 1.5, H).astype(dtype), rng.standard_normal(H).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    wide = lambda *a: [v.astype(np.float64) for v in a]  # noqa: E731
    got, ref = tk.layernorm_forward(x, g, b, 1e-5), tk.layernorm_forward_ref(*wide(x, g, b), 1e-5)
    assert got[2].shape == shape[:-1] + (1,)
    for a, r in zip(got, ref):
        assert a.dtype == dtype
        close(a, r, dtype)
    xhat, rstd = got[1:]
    for a, r in zip(tk.layernorm_backward(dy, xhat, rstd, g), tk.layernorm_backward_ref(*wide(dy, xhat, rstd, g))):
        assert a.dtype == dtype
        close(a, r, dtype)


# (B, nh, T, S): one query over one key, a square window, queries after S - T keys of context (the
# key/value cache), and rows longer than a vector register
SOFTMAX_SHAPES = [(1, 1, 1, 1), (2, 3, 5, 5), (1, 2, 3, 7), (2, 1, 33, 40)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
@pytest.mark.parametrize("p", [0.0, 0.4])
def test_causal_softmax_forward_and_backward(shape, p, dtype, rng):
    scores = (rng.standard_normal(shape) * 8).astype(dtype)
    u = rng.random(shape, dtype=np.float32)
    datt = rng.standard_normal(shape).astype(dtype)
    scale = 0.3
    att_ref, dropped_ref, mask_ref = tk.causal_softmax_ref(scores.astype(np.float64), scale, p, u)
    att, dropped, mask = tk.causal_softmax(scores.copy(), scale, p, u)
    T, S = shape[2:]
    assert np.all(att[..., np.arange(S)[None, :] > np.arange(S - T, S)[:, None]] == 0)
    for a, r in ((att, att_ref), (dropped, dropped_ref)):
        assert a.dtype == dtype
        close(a, r, dtype)
    if p:
        np.testing.assert_array_equal(mask != 0, mask_ref != 0)   # the same entries dropped
        close(mask, mask_ref, dtype)
    else:
        assert mask is None and mask_ref is None and dropped is att
    ds = tk.causal_softmax_backward(datt.copy(), att, mask, scale)
    wide = None if mask is None else mask.astype(np.float64)
    close(ds, tk.causal_softmax_backward_ref(datt.astype(np.float64), att.astype(np.float64), wide, scale), dtype)


def test_causal_softmax_draws_the_masks_of_dkps_dropout(rng):
    """The attention's uniforms, drawn from a NumPy Generator as dkp.core.layers.dropout draws its own,
    give the same mask bit for bit."""
    att = tk.causal_softmax_ref(rng.standard_normal((2, 2, 6, 6)).astype(np.float32), 0.5)[0]
    _, want = dropout(att, 0.3, np.random.default_rng(5))
    u = np.random.default_rng(5).random(att.shape, dtype=np.float32)
    np.testing.assert_array_equal(tk.causal_softmax(att.copy(), 1.0, 0.3, u)[2], want)


def test_transformer_kernels_take_the_reference_for_other_dtypes():
    x = np.linspace(-3, 3, 12, dtype=np.float16).reshape(3, 4)
    y, t = tk.gelu_forward(x)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, tk.gelu_forward_ref(x)[0])


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="already the no-JIT run")
def test_kernels_without_jit():
    """This module again, with Numba disabled: the kernels' Python source must give the same results."""
    rerun_without_jit(__file__, timeout=300)
