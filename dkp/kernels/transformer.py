"""Training kernels for the transformer's elementwise passes, each beside its NumPy reference: GELU
(GPT-2's tanh approximation), LayerNorm, and the attention's causal softmax with its dropout,
forward and backward. `dkp.core.layers` and `dkp.core.attention` call them; the equations are
theirs (shapes there):

    GELU       t = tanh(c (x + a x^3)),  y = 0.5 x (1 + t)
               dx = dy (0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2))
    LayerNorm  xhat = (x - mean) / sqrt(var + eps),  y = xhat g + b              over each row
               dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),  dxhat = dy g
    softmax    att = softmax(scale s) over the keys a query sees (row r's query i = r mod T sees
               P + i + 1 keys), 0 beyond; with dropout p, mask = (u >= p) / (1 - p), dropped = att mask
               ds = scale att (g - sum(g att)),  g = datt mask

In NumPy each term is a pass over the whole array with a temporary (the softmax's causal mask a
boolean-indexed assignment, slower than the softmax itself); here one call makes one or two passes
over each row while it sits in cache. The arithmetic is the reference's, operation for operation
(constants rounded to the array's dtype, as NumPy rounds a Python float), so the results differ from
it by rounding only: in the order of the row sums (vectorised, fastmath "reassoc" on those loops
alone), and in float32 in tanh, `_tanh_fast` (|error| < 3e-7) as in `dkp.kernels.cell`. The softmax
leaves its exponential to NumPy (`np.exp`, vectorised; Numba's calls libm once an element, five
times slower) between its two kernels. The dropout's uniforms `u` come from the caller's NumPy
Generator, drawn as the reference draws them, so the masks are the same.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from dkp.kernels.cell import _fast_tanh, _tanh

GELU_C = math.sqrt(2.0 / math.pi)   # python floats: NumPy rounds them to a float32 array's dtype
GELU_A = 0.044715
SUMS = {"reassoc"}                  # the row sums may be reordered (vectorised); nothing else


# --- GELU ------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy", inline="always")
def _gelu_tanh(w, one, fast):
    """tanh(w); in float32 (`fast`) exactly +-1 beyond |w| = 9.1, as tanhf (which rounds to +-1 from
    about 9.01), where `_tanh_fast` would give its clamp's +-0.99999976."""
    if fast and w > 9.1:
        return one
    if fast and w < -9.1:
        return -one
    return _tanh(w, fast)


@njit(cache=True, error_model="numpy")
def _gelu_forward(x, y, t, fast):
    """y, t (n,) <- GELU(x) and the tanh it took, over flat arrays."""
    c, a = x.dtype.type(GELU_C), x.dtype.type(GELU_A)
    half, one = x.dtype.type(0.5), x.dtype.type(1.0)
    for k in range(x.shape[0]):
        v = x[k]
        u = _gelu_tanh(c * (v + a * v * v * v), one, fast)
        t[k] = u
        y[k] = half * v * (one + u)


@njit(cache=True, error_model="numpy")
def _gelu_backward(dy, x, t, dx):
    """dx (n,) <- dy times GELU's derivative at x, from the forward's tanh t."""
    c, a3 = x.dtype.type(GELU_C), x.dtype.type(3.0 * GELU_A)
    half, one = x.dtype.type(0.5), x.dtype.type(1.0)
    for k in range(x.shape[0]):
        v, u = x[k], t[k]
        dx[k] = dy[k] * (half * (one + u) + half * v * (one - u * u) * c * (one + a3 * v * v))


def kernel_dtype(*arrays):
    """The dtype the kernels run in for these arrays (NumPy's promotion), or None where they have no
    compiled form (not float32 or float64): the caller takes the reference then."""
    dtype = np.result_type(*arrays)
    return dtype if dtype in (np.float32, np.float64) else None


def gelu_forward(x):
    """(y, t): GELU of x (any shape) and the tanh its backward reads."""
    if kernel_dtype(x) is None:
        return gelu_forward_ref(x)
    x = np.ascontiguousarray(x)
    y, t = np.empty_like(x), np.empty_like(x)
    _gelu_forward(x.reshape(-1), y.reshape(-1), t.reshape(-1), _fast_tanh(x.dtype))
    return y, t


def gelu_backward(dy, x, t):
    """dx of the shape of x, from the upstream dy and the forward's x and t."""
    dtype = kernel_dtype(dy, x, t)
    if dtype is None:
        return gelu_backward_ref(dy, x, t)
    dy, x, t = (np.ascontiguousarray(a, dtype) for a in (dy, x, t))
    dx = np.empty_like(x)
    _gelu_backward(dy.reshape(-1), x.reshape(-1), t.reshape(-1), dx.reshape(-1))
    return dx


def gelu_forward_ref(x):
    t = np.tanh(GELU_C * (x + GELU_A * x * x * x))
    return 0.5 * x * (1.0 + t), t


def gelu_backward_ref(dy, x, t):
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x))


# --- LayerNorm -------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy", fastmath=SUMS)
def _row_sum(a):
    s = a.dtype.type(0.0)
    for k in range(a.shape[0]):
        s += a[k]
    return s


@njit(cache=True, error_model="numpy", fastmath=SUMS)
def _row_dot(a, b):
    s = a.dtype.type(0.0)
    for k in range(a.shape[0]):
        s += a[k] * b[k]
    return s


@njit(cache=True, error_model="numpy")
def _layernorm_forward(x, g, b, eps, y, xhat, rstd):
    """Row by row over x (N, H): xhat, y (N, H) and rstd (N,)."""
    H = x.shape[1]
    n, one, e = x.dtype.type(H), x.dtype.type(1.0), x.dtype.type(eps)
    for r in range(x.shape[0]):
        xr, xh = x[r], xhat[r]
        mean = _row_sum(xr) / n
        for k in range(H):
            xh[k] = xr[k] - mean
        s = one / np.sqrt(_row_dot(xh, xh) / n + e)
        rstd[r] = s
        yr = y[r]
        for k in range(H):
            v = xh[k] * s
            xh[k] = v
            yr[k] = v * g[k] + b[k]


@njit(cache=True, error_model="numpy")
def _layernorm_backward(dy, xhat, rstd, g, dx, dg, db):
    """dx (N, H) and, summed over the rows in their order, dg and db (H,) (zeroed here)."""
    N, H = dy.shape
    n = dy.dtype.type(H)
    dg[:] = 0
    db[:] = 0
    for r in range(N):
        d, xh, out = dy[r], xhat[r], dx[r]
        for k in range(H):
            dg[k] += d[k] * xh[k]
            db[k] += d[k]
            out[k] = d[k] * g[k]                               # dxhat, in place of dx
        m1 = _row_sum(out) / n
        m2 = _row_dot(out, xh) / n
        s = rstd[r]
        for k in range(H):
            out[k] = s * (out[k] - m1 - xh[k] * m2)


def layernorm_forward(x, g, b, eps):
    """(y, xhat, rstd) over the last axis of x: y and xhat of x's shape, rstd (..., 1)."""
    dtype = kernel_dtype(x, g, b)
    if dtype is None:
        return layernorm_forward_ref(x, g, b, eps)
    x = np.ascontiguousarray(x, dtype)
    H = x.shape[-1]
    y, xhat = np.empty_like(x), np.empty_like(x)
    rstd = np.empty(x.shape[:-1] + (1,), dtype)
    _layernorm_forward(x.reshape(-1, H), g.astype(dtype, copy=False), b.astype(dtype, copy=False), float(eps),
                       y.reshape(-1, H), xhat.reshape(-1, H), rstd.reshape(-1))
    return y, xhat, rstd


def layernorm_backward(dy, xhat, rstd, g):
    """(dx of dy's shape, dg, db)."""
    dtype = kernel_dtype(dy, xhat, rstd, g)
    if dtype is None:
        return layernorm_backward_ref(dy, xhat, rstd, g)
    H = xhat.shape[-1]
    dy, xhat, rstd = (np.ascontiguousarray(a, dtype) for a in (dy, xhat, rstd))
    dx = np.empty_like(dy)
    dg, db = np.empty(H, dtype), np.empty(H, dtype)
    _layernorm_backward(dy.reshape(-1, H), xhat.reshape(-1, H), rstd.reshape(-1), g.astype(dtype, copy=False),
                        dx.reshape(-1, H), dg, db)
    return dx, dg, db


def layernorm_forward_ref(x, g, b, eps):
    xc = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(np.mean(xc * xc, axis=-1, keepdims=True) + eps)   # (..., 1)
    xhat = xc * rstd
    return xhat * g + b, xhat, rstd


def layernorm_backward_ref(dy, xhat, rstd, g):
    H = xhat.shape[-1]
    dxhat = dy * g
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, (dy * xhat).reshape(-1, H).sum(axis=0), dy.reshape(-1, H).sum(axis=0)


# --- the attention's causal softmax ----------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _scale_shift(s, scale, T, P):
    """s (R, S) <- scale s minus its row's largest visible entry, -inf where row r's query
    (r mod T, at position P + r mod T) may not look: exp of it is the softmax's numerator."""
    sc = s.dtype.type(scale)
    ninf = s.dtype.type(-np.inf)
    for r in range(s.shape[0]):
        row = s[r]
        n = P + r % T + 1
        m = ninf
        for j in range(n):
            v = row[j] * sc
            row[j] = v
            m = v if v > m else m
        for j in range(n):
            row[j] = row[j] - m
        for j in range(n, row.shape[0]):
            row[j] = ninf


@njit(cache=True, error_model="numpy")
def _normalize(e, T, P):
    """e (R, S) <- e over its row's sum (the visible keys'; the others are 0)."""
    for r in range(e.shape[0]):
        row = e[r]
        n = P + r % T + 1
        total = _row_sum(row[:n])
        for j in range(n):
            row[j] = row[j] / total


@njit(cache=True, error_model="numpy")
def _dropout(att, u, p, mask, dropped):
    """mask <- (u >= p) / (1 - p) in att's dtype, dropped <- att mask, over flat arrays."""
    keep = att.dtype.type(1.0) / att.dtype.type(1.0 - p)
    zero, p_u = att.dtype.type(0.0), u.dtype.type(p)          # p in u's dtype, as NumPy compares them
    for k in range(att.shape[0]):
        m = keep if u[k] >= p_u else zero
        mask[k] = m
        dropped[k] = att[k] * m


@njit(cache=True, error_model="numpy")
def _softmax_backward(g, att, mask, scale, T, P, dropout):
    """g (R, S), the gradient of the dropped weights, <- that of the scores, in place; 0 where masked."""
    sc = g.dtype.type(scale)
    for r in range(g.shape[0]):
        row, a = g[r], att[r]
        n = P + r % T + 1
        if dropout:
            m = mask[r]
            for j in range(n):
                row[j] = row[j] * m[j]
        dot = _row_dot(row[:n], a[:n])
        for j in range(n):
            row[j] = a[j] * (row[j] - dot) * sc
        for j in range(n, row.shape[0]):
            row[j] = 0


def causal_softmax(scores, scale, p=0.0, u=None):
    """(att, dropped, mask) from raw scores q k^T (..., T, S), S >= T, overwritten by att: the causal
    softmax of scale * scores, its dropout with probability p where the uniforms u (scores' shape,
    float32) are given (mask None and dropped att without)."""
    if kernel_dtype(scores) is None:
        return causal_softmax_ref(scores, scale, p, u)
    T, S = scores.shape[-2:]
    att = np.ascontiguousarray(scores)
    rows = att.reshape(-1, S)
    _scale_shift(rows, float(scale), T, S - T)
    np.exp(rows, out=rows)
    _normalize(rows, T, S - T)
    if u is None or p == 0.0:
        return att, att, None
    mask, dropped = np.empty_like(att), np.empty_like(att)
    _dropout(att.reshape(-1), np.ascontiguousarray(u).reshape(-1), float(p), mask.reshape(-1), dropped.reshape(-1))
    return att, dropped, mask


def causal_softmax_backward(datt, att, mask, scale):
    """The gradient of the scores (att's shape) from that of the dropped weights datt, overwritten."""
    if kernel_dtype(datt, att) is None:
        return causal_softmax_backward_ref(datt, att, mask, scale)
    T, S = att.shape[-2:]
    g = np.ascontiguousarray(datt, att.dtype)
    a = np.ascontiguousarray(att)
    m = a if mask is None else np.ascontiguousarray(mask, att.dtype)
    _softmax_backward(g.reshape(-1, S), a.reshape(-1, S), m.reshape(-1, S), float(scale), T, S - T,
                      mask is not None)
    return g


def causal_softmax_ref(scores, scale, p=0.0, u=None):
    T, S = scores.shape[-2:]
    s = scores * scale
    s[..., np.arange(S)[None, :] > np.arange(S - T, S)[:, None]] = -np.inf
    att = np.exp(s - s.max(axis=-1, keepdims=True))
    att /= att.sum(axis=-1, keepdims=True)
    if u is None or p == 0.0:
        return att, att, None
    mask = (u >= p).astype(att.dtype) / (1.0 - p)
    return att, att * mask, mask


def causal_softmax_backward_ref(datt, att, mask, scale):
    if mask is not None:
        datt = datt * mask
    return att * (datt - np.sum(datt * att, axis=-1, keepdims=True)) * scale
