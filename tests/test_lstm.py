"""The LSTM layer's hand-written BPTT against finite differences (float64), and step == sequence."""
import numpy as np
import pytest

from dkp.core.gradcheck import entrywise
from dkp.core.lstm import LSTMLayer
from dkp.core.weights import Dense

T, B, IN, H = 5, 3, 4, 6


def make_layer(rng):
    W = Dense(rng.uniform(-0.5, 0.5, (4 * H, IN + H)))
    return LSTMLayer(W, rng.uniform(-0.5, 0.5, 4 * H), IN, H)


def make_problem(rng):
    layer = make_layer(rng)
    x = rng.standard_normal((T, B, IN))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    R, Rh, Rc = rng.standard_normal((T, B, H)), rng.standard_normal((B, H)), rng.standard_normal((B, H))

    def loss():  # a generic scalar of every output, final state included
        hs, (hT, cT), _ = layer.forward(x, (h0, c0))
        return float(np.sum(R * hs) + np.sum(Rh * hT) + np.sum(Rc * cT))

    hs, _, cache = layer.forward(x, (h0, c0))
    dx, grads, (dh0, dc0) = layer.backward(R.copy(), cache, dstate=(Rh.copy(), Rc.copy()))
    return layer, loss, x, h0, c0, dx, grads, dh0, dc0


def test_lstm_parameter_gradients(rng):
    layer, loss, *_, grads, _, _ = make_problem(rng)
    assert entrywise(loss, layer.W.params["W"], grads["W"]) < 1e-6
    assert entrywise(loss, layer.b, grads["b"]) < 1e-6


def test_lstm_input_and_state_gradients(rng):
    _, loss, x, h0, c0, dx, _, dh0, dc0 = make_problem(rng)
    assert entrywise(loss, x, dx) < 1e-6
    assert entrywise(loss, h0, dh0) < 1e-6
    assert entrywise(loss, c0, dc0) < 1e-6


def test_gradcheck_catches_a_wrong_gradient(rng):
    layer, loss, *_, grads, _, _ = make_problem(rng)
    wrong = grads["W"] * 1.001  # off by 0.1% everywhere
    assert entrywise(loss, layer.W.params["W"], wrong) > 1e-4


def test_step_by_step_equals_whole_sequence(rng):
    layer = make_layer(rng)
    x = rng.standard_normal((T, B, IN))
    state = (rng.standard_normal((B, H)), rng.standard_normal((B, H)))
    hs, final, _ = layer.forward(x, state)
    s, outs = state, []
    for t in range(T):
        h1, s, _ = layer.forward(x[t:t + 1], s)
        outs.append(h1[0])
    np.testing.assert_allclose(np.stack(outs), hs, rtol=0, atol=1e-14)
    np.testing.assert_allclose(s[0], final[0], rtol=0, atol=1e-14)
    np.testing.assert_allclose(s[1], final[1], rtol=0, atol=1e-14)


def test_bad_shapes_are_named(rng):
    with pytest.raises(ValueError, match=r"W must have shape \(4 \* hidden_size"):
        LSTMLayer(Dense(np.zeros((4 * H, IN))), np.zeros(4 * H), IN, H)
    with pytest.raises(ValueError, match="b must have shape"):
        LSTMLayer(Dense(np.zeros((4 * H, IN + H))), np.zeros(H), IN, H)


# --- the fast path (dkp.core.lstm_fast) against this reference, for every structure -------------
from test_weights import MATRICES, M as WM, N as WN, make as make_matrix  # noqa: E402

from dkp.core import lstm_fast  # noqa: E402
from dkp.core.lstm_fast import FastLSTMLayer  # noqa: E402

FAST = ("dense", "pruned")       # the structures whose products are one dense array


@pytest.mark.parametrize("transpose_min_rows", [1, 10**9])   # W_h.T copied for the window / read in place
@pytest.mark.parametrize("name", ["dense", *MATRICES])
def test_fast_path_equals_the_reference(name, transpose_min_rows, monkeypatch):
    monkeypatch.setattr(lstm_fast, "TRANSPOSE_MIN_ROWS", transpose_min_rows)
    rng = np.random.default_rng(3)
    Hh, n_in, Tt, Bb = WM // 4, WN - WM // 4, 6, 5            # 3 units, 7 inputs: awkward on purpose
    W = Dense(rng.uniform(-0.5, 0.5, (WM, WN))) if name == "dense" else make_matrix(name)
    layer = FastLSTMLayer(W, rng.uniform(-0.5, 0.5, WM), n_in, Hh)
    x = rng.standard_normal((Tt, Bb, n_in))
    state = (rng.standard_normal((Bb, Hh)), rng.standard_normal((Bb, Hh)))
    dhs, dstate = rng.standard_normal((Tt, Bb, Hh)), (rng.standard_normal((Bb, Hh)), rng.standard_normal((Bb, Hh)))
    out = {}
    for fast in (True, False):
        layer.fast = fast
        W.begin_batch(np.random.default_rng(11))                # the same dropout masks on both paths
        hs, final, cache = layer.forward(x, state)
        dx, grads, dstate0 = layer.backward(dhs.copy(), cache, dstate=tuple(d.copy() for d in dstate))
        out[fast] = (hs, final, dx, grads, dstate0, isinstance(cache, lstm_fast.WindowCache))
    (hs, final, dx, grads, d0, took_fast), (hs_r, final_r, dx_r, grads_r, d0_r, _) = out[True], out[False]
    assert took_fast == (name in FAST)
    for a, b in [(hs, hs_r), *zip(final, final_r), (dx, dx_r), *zip(d0, d0_r)]:
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    assert grads.keys() == grads_r.keys()
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_r[k], rtol=0, atol=1e-10, err_msg=k)


def test_fast_path_float32_and_leaves_its_inputs_alone():
    """float32 (the training dtype, where the cell kernel's tanh is a rational approximation) stays
    within float32 rounding of the reference; neither path writes into the state, dhs or dstate."""
    rng = np.random.default_rng(5)
    Hh, n_in, Tt, Bb = 9, 5, 7, 4
    W = Dense(rng.uniform(-0.5, 0.5, (4 * Hh, n_in + Hh)).astype(np.float32))
    layer = FastLSTMLayer(W, rng.uniform(-0.5, 0.5, 4 * Hh).astype(np.float32), n_in, Hh)
    x = rng.standard_normal((Tt, Bb, n_in)).astype(np.float32)
    arrays = [rng.standard_normal((Bb, Hh)).astype(np.float32) for _ in range(4)]
    dhs = rng.standard_normal((Tt, Bb, Hh)).astype(np.float32)
    kept = [a.copy() for a in (*arrays, dhs)]
    out = {}
    for fast in (True, False):
        layer.fast = fast
        hs, final, cache = layer.forward(x, (arrays[0], arrays[1]))
        dx, grads, d0 = layer.backward(dhs, cache, dstate=(arrays[2], arrays[3]))
        out[fast] = [hs, *final, dx, *d0, *grads.values()]
        for a, k in zip((*arrays, dhs), kept):
            np.testing.assert_array_equal(a, k)
    for a, b in zip(out[True], out[False]):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def test_the_reference_layer_is_the_equations_alone(rng):
    """LSTMLayer (what notebook 01 prints) runs its own equations whatever W is, with no path choice in
    its source; the model's layers are FastLSTMLayers, which take the fast path for a dense W unless
    `fast` is False."""
    import inspect

    from dkp.core import lstm
    from dkp.core.model import LanguageModel
    layer = make_layer(rng)                                   # a dense W
    x, state = rng.standard_normal((T, B, IN)), (np.zeros((B, H)), np.zeros((B, H)))
    _, _, cache = layer.forward(x, state)
    assert isinstance(cache, list) and len(cache) == T        # the reference's per-step cache
    for source in (inspect.getsource(lstm.LSTMLayer.forward), inspect.getsource(lstm.LSTMLayer.backward)):
        assert "fast" not in source and "WindowCache" not in source
    assert not hasattr(lstm, "lstm_fast")                     # the reference does not import the fast path
    model = LanguageModel(11, H, 2, seed=0, dtype=np.float64)
    assert all(type(lay) is FastLSTMLayer for lay in model.layers)
    lay, xm = model.layers[0], rng.standard_normal((T, B, H))
    assert isinstance(lay.forward(xm, state)[2], lstm_fast.WindowCache)
    lay.fast = False
    assert isinstance(lay.forward(xm, state)[2], list)


def test_recurrent_weight_is_copied_only_for_long_windows():
    """One step, or batch 1 at any length: W_h.T is a view of W (no copy); a window of at least
    TRANSPOSE_MIN_ROWS rows at batch > 1: a C-contiguous copy. Both hold W_h.T."""
    Hh, n_in = 6, 4
    Wd = np.arange(4 * Hh * (n_in + Hh), dtype=np.float32).reshape(4 * Hh, n_in + Hh)
    rows = lstm_fast.TRANSPOSE_MIN_ROWS
    for Tt, Bb, copied in ((1, 1, False), (1, 20, False), (2 * rows, 1, False), (rows // 20 - 1, 20, False),
                           (-(-rows // 20), 20, True), (35, 20, True)):
        Wh_t = lstm_fast.transposed_recurrent_weight(Wd, n_in, Tt, Bb)
        np.testing.assert_array_equal(Wh_t, Wd[:, n_in:].T)
        assert np.shares_memory(Wh_t, Wd) == (not copied), (Tt, Bb)
        assert Wh_t.flags.c_contiguous == copied, (Tt, Bb)


@pytest.mark.parametrize("transpose_min_rows", [1, 10**9])
def test_fast_path_follows_in_place_weight_updates(transpose_min_rows, monkeypatch):
    """The optimizers update W in place: after such an update the fast path (W_h.T copied for the
    window or read in place) still equals the reference, for a window and for one step."""
    monkeypatch.setattr(lstm_fast, "TRANSPOSE_MIN_ROWS", transpose_min_rows)
    rng = np.random.default_rng(8)
    W = Dense(rng.uniform(-0.5, 0.5, (4 * H, IN + H)))
    layer = FastLSTMLayer(W, rng.uniform(-0.5, 0.5, 4 * H), IN, H)
    x = rng.standard_normal((T, B, IN))
    state = (rng.standard_normal((B, H)), rng.standard_normal((B, H)))
    for update in range(3):
        for window in (x, x[:1]):
            layer.fast = True
            hs, final, cache = layer.forward(window, state)
            assert isinstance(cache, lstm_fast.WindowCache)
            layer.fast = False
            hs_r, final_r, _ = layer.forward(window, state)
            for a, b in [(hs, hs_r), *zip(final, final_r)]:
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
        W.params["W"] -= 0.3 * rng.standard_normal(W.shape)  # in place, as SGD does
