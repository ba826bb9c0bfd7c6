"""Doping (Thakker et al.): W = structured + S, with S extremely sparse, and co-matrix dropout (CMR).

S has W's full shape; only the entries on its pattern are stored (CSR: indptr, int32 indices, and
the values params["S"] (nnz,)). dkp's design (docs/background.md): S starts fully dense and zero, its
density is annealed by magnitude with `set_density` (on `dkp.compression.schedules.cubic_schedule`), then frozen.

Co-matrix dropout regularises the sparse branch during training only, by default with inverted
scaling (kept parts are divided by 1 - p; `cmr_rescale=False` keeps them as they are); evaluation
always uses W = structured + S as is:

    "output"   element-wise dropout on S x: a fresh (B, m) mask per forward call, drawn from the
               Generator given to `begin_batch`, kept in the cache for the backward pass
    "branch"   the whole S x dropped (or kept and scaled) for a minibatch, drawn in `begin_batch`
    "connect"  DropConnect on S's values: one (nnz,) mask per minibatch, drawn in `begin_batch`
"""
from __future__ import annotations

import numpy as np

from dkp.core.checks import check_density, check_fraction
from dkp.core.weights.base import GateMatrix
from dkp.core.weights.sparse import csr_from_flat, csr_nbytes, csr_rows, largest, n_keep
from dkp.kernels import sparse

CMR_VARIANTS = ("output", "branch", "connect")


class Doped(GateMatrix):
    """structured (Kronecker, LowRank, Hybrid, ...) + a sparse overlay S.

    Args:
        structured: the structured gate matrix; its params appear in this matrix's params under
            their own names ("A", "B" / "U", "V" / "D", "U", "V"), next to "S".
        density: fraction of S's m*n entries stored, in (0, 1]; S's largest-magnitude entries are kept.
        S: initial dense S (m, n); default zeros (then the kept pattern is arbitrary).
        cmr_p: co-matrix dropout probability in [0, 1); 0 disables it.
        cmr_variant: "output" (default), "branch" or "connect" (see the module docstring).
        cmr_rescale: divide the kept part by 1 - p (default) or keep it unscaled. `cmr_p` may be
            changed between minibatches (a schedule of p); the next `begin_batch` uses the new value.
        dense_above: above this density, S's products scatter S into a dense (m, n) buffer and use
            BLAS; at or below it they use the Numba CSR kernels. Default 0.1: on a 2-core x86
            machine the CSR kernels win below about 0.15 for a batch-20 step and below about 0.06
            for the gradient over a 20 x 35 window, so 0.1 is a compromise for both.

    Attributes: `training` (dropout on or off), `s_enabled` (False switches S off entirely: the
    forward, the gradients and `to_dense` see the structured part alone).
    """

    def __init__(self, structured, density=1.0, S=None, *, cmr_p=0.0, cmr_variant="output", cmr_rescale=True,
                 dense_above=0.1):
        if not isinstance(structured, GateMatrix) or isinstance(structured, Doped):
            raise ValueError(f"structured must be a (non-doped) GateMatrix, got {type(structured).__name__}")
        if "S" in structured.params:
            raise ValueError("structured already has a parameter named 'S'")
        density = check_density(density)
        cmr_p = check_fraction(cmr_p, "cmr_p")
        if cmr_variant not in CMR_VARIANTS:
            raise ValueError(f"cmr_variant must be one of {list(CMR_VARIANTS)}, got {cmr_variant!r}")
        self.dense_above = float(dense_above)
        m, n = self.shape = structured.shape
        dtype = structured.dtype
        S = np.zeros((m, n), dtype) if S is None else np.asarray(S, dtype)
        if S.shape != (m, n):
            raise ValueError(f"S must have the matrix shape {(m, n)}, got {S.shape}")
        flat = largest(S, n_keep(density, m * n))
        self.indptr, self.indices = csr_from_flat(flat, (m, n))
        self.structured = structured
        self.params = {**structured.params, "S": S.reshape(-1)[flat].copy()}
        self.cmr_p, self.cmr_variant, self.cmr_rescale = cmr_p, cmr_variant, bool(cmr_rescale)
        self.s_enabled = True
        self._rng = None           # Generator of the current minibatch ("output" draws per call)
        self._branch_scale = None  # "branch": 0 or 1/(1-p) for the current minibatch
        self._connect = None       # "connect": (nnz,) scaled mask for the current minibatch
        self._reset_dense()

    # --- bookkeeping ---------------------------------------------------------------------------
    @property
    def nnz(self):
        return len(self.indices)

    @property
    def density(self):
        return self.nnz / (self.shape[0] * self.shape[1])

    @property
    def n_params(self):
        """Structured parameters + non-zeros of S."""
        return self.structured.n_params + self.nnz

    @property
    def n_bytes(self):
        """Structured bytes + S in CSR form (values, int32 indices, int32 row pointers)."""
        return self.structured.n_bytes + csr_nbytes(self.nnz, self.shape[0], self.dtype.itemsize)

    @property
    def buffers(self):
        return {**{f"structured.{k}": v for k, v in self.structured.buffers.items()},
                "indptr": self.indptr, "indices": self.indices}

    def load_buffers(self, buffers):
        inner = {k[len("structured."):]: v for k, v in buffers.items() if k.startswith("structured.")}
        if inner or self.structured.buffers:
            self.structured.load_buffers(inner)
        indptr, indices = np.asarray(buffers["indptr"]), np.asarray(buffers["indices"])
        if indptr.shape != (self.shape[0] + 1,) or indptr[-1] != len(indices):
            raise ValueError(f"buffers 'indptr' and 'indices' do not describe a CSR pattern of a "
                             f"{self.shape[0]}x{self.shape[1]} matrix")
        self.indptr, self.indices = indptr.astype(np.int32), indices.astype(np.int32)
        if self.params["S"].shape != self.indices.shape:
            self.params["S"] = np.zeros(self.indices.shape, self.dtype)
        self._connect = None
        self._reset_dense()

    def _sync(self):
        st = self.structured
        for k in st.params:
            st.params[k] = self.params[k]
        st._sync()
        self.params.update(st.params)
        if self._connect is not None:
            self._connect = self._connect.astype(self.params["S"].dtype)
        self._reset_dense()

    def _reset_dense(self):
        self._dense_buf = None     # (m, n) scatter target of the dense-product path
        self._flat = None          # (nnz,) flat positions of the pattern, for dense-path gradients

    def to_dense(self):
        W = self.structured.to_dense()
        if self.s_enabled:
            W += self.sparse_dense()
        return W

    def sparse_dense(self):
        """S as a dense (m, n) array."""
        return sparse.csr_to_dense(self.indptr, self.indices, self.params["S"], self.shape)

    # --- annealing -----------------------------------------------------------------------------
    def set_density(self, density):
        """Keep the round(density * m * n) entries of S of largest magnitude (density can only go down).
        Returns `keep`, the sorted indices of the kept old values: an optimizer re-indexes its state
        for "S" with it (state = state[keep])."""
        density = check_density(density)
        k = n_keep(density, self.shape[0] * self.shape[1])
        if k > self.nnz:
            raise ValueError(f"density {density} would keep {k} entries, but S holds only {self.nnz} "
                             f"(density {self.density:.6g}): the density of S can only be lowered")
        keep = largest(self.params["S"], k)
        self.indptr = sparse.csr_indptr(csr_rows(self.indptr)[keep], self.shape[0])
        self.indices = self.indices[keep]
        self.params["S"] = self.params["S"][keep]
        if self._connect is not None:
            self._connect = self._connect[keep]
        self._reset_dense()
        return keep

    # --- co-matrix dropout ---------------------------------------------------------------------
    def begin_batch(self, rng):
        """Draw this minibatch's CMR masks ("branch", "connect") and keep rng for "output"."""
        self.structured.begin_batch(rng)
        self._rng = rng
        p = self.cmr_p
        if p > 0 and self.cmr_variant == "branch":
            self._branch_scale = self._kept_scale() if rng.random() >= p else 0.0
        elif p > 0 and self.cmr_variant == "connect":
            self._connect = (rng.random(self.nnz) >= p).astype(self.dtype)
            self._connect *= self.dtype.type(self._kept_scale())

    def _kept_scale(self):
        """What a kept part of S is multiplied by: 1 / (1 - p), or 1 without rescaling."""
        return 1.0 / (1.0 - self.cmr_p) if self.cmr_rescale else 1.0

    def after_update(self):
        self.structured.after_update()

    def _dropout_on(self):
        return self.training and self.cmr_p > 0

    def _need(self, value, what):
        if value is None:
            raise RuntimeError(f"co-matrix dropout ({self.cmr_variant!r}, p={self.cmr_p}) needs {what}: "
                               f"call begin_batch(rng) before a training forward")
        return value

    def _values(self):
        """S's values as the products use them: DropConnect-masked in training with "connect"."""
        v = self.params["S"]
        if self._dropout_on() and self.cmr_variant == "connect":
            v = v * self._need(self._connect, "a DropConnect mask")
        return v

    # --- S's products ----------------------------------------------------------------------------
    def _dense_path(self):
        return self.nnz > self.dense_above * self.shape[0] * self.shape[1]

    def _s_dense(self, v):
        m, n = self.shape
        if len(v) == m * n:
            return v.reshape(m, n)  # full pattern, row-major: the values are the dense matrix
        if self._dense_buf is None or self._dense_buf.dtype != v.dtype:
            self._dense_buf = np.zeros((m, n), v.dtype)
        return sparse.csr_scatter(self.indptr, self.indices, v, self._dense_buf)

    def _s_matmul(self, x, v, out=None):
        """x @ S_v.T (B, m), added into `out` when given."""
        if self._dense_path():
            s = x @ self._s_dense(v).T
            if out is None:
                return s
            out += s
            return out
        return sparse.csr_matmul(self.indptr, self.indices, v, x, self.shape[0], out=out,
                                  accumulate=out is not None)

    def _s_matmul_t(self, dy, v):
        if self._dense_path():
            return dy @ self._s_dense(v)
        return sparse.csr_matmul_t(self.indptr, self.indices, v, dy, self.shape[1])

    def _s_grad(self, x, dy):
        if self._dense_path():
            g = (dy.T @ x).reshape(-1)                      # (m*n,)
            if self.nnz == g.size:
                return g
            if self._flat is None:
                self._flat = csr_rows(self.indptr) * self.shape[1] + self.indices
            return g[self._flat]
        return sparse.csr_grad(self.indptr, self.indices, x, dy)

    # --- the protocol --------------------------------------------------------------------------
    def forward(self, x):
        """y = x @ (structured + S).T; the cache is the structured cache plus the dropout mask
        ((B, m) for "output", (B, 1) for "branch", None otherwise)."""
        self._check_input(x, self.shape[1], "x")
        if not self.s_enabled:
            y, sc = self.structured.forward(x)
            return y, (*sc, None)
        if not self._dropout_on():
            if not self._dense_path():   # the structure may fuse its product with S's (KP at batch 1)
                y, sc = self.structured.forward_plus_sparse(x, self.indptr, self.indices, self.params["S"])
                return y, (*sc, None)
            y, sc = self.structured.forward(x)
            return self._s_matmul(x, self.params["S"], out=y), (*sc, None)
        y, sc = self.structured.forward(x)
        p, variant = self.cmr_p, self.cmr_variant
        if variant == "connect":
            return self._s_matmul(x, self._values(), out=y), (*sc, None)
        if variant == "output":
            keep = self._need(self._rng, "a Generator").random((x.shape[0], self.shape[0])) >= p
            mask = keep.astype(y.dtype)                     # (B, m)
            mask *= y.dtype.type(self._kept_scale())
        else:  # branch
            scale = self._need(self._branch_scale, "the minibatch's branch draw")
            mask = np.full((x.shape[0], 1), scale, y.dtype)  # (B, 1)
            if scale == 0.0:
                return y, (*sc, mask)
        s = self._s_matmul(x, self.params["S"])
        s *= mask
        y += s
        return y, (*sc, mask)

    def _apply(self, x):
        return self.forward(x)[0]

    def _s_dy(self, dy, mask):
        """dy as seen by the S branch, or None when the branch was dropped."""
        if not self.s_enabled:
            return None
        if mask is None:
            return dy
        if mask.shape[1] == 1 and not mask.any():
            return None
        return dy * mask

    def backward_input(self, dy, cache):
        *sc, mask = cache
        dx = self.structured.backward_input(dy, tuple(sc))
        dys = self._s_dy(dy, mask)
        if dys is not None:
            dx += self._s_matmul_t(dys, self._values())
        return dx

    def backward_params(self, dy, cache):
        *sc, mask = cache
        grads = self.structured.backward_params(dy, tuple(sc))
        dys = self._s_dy(dy, mask)
        if dys is None:
            gS = np.zeros(self.nnz, np.result_type(self.dtype, dy.dtype))
        else:
            gS = self._s_grad(sc[0], dys)
            if self._dropout_on() and self.cmr_variant == "connect":
                gS *= self._connect
        grads["S"] = gS
        return grads

    # --- diagnostics (co-matrix adaptation) ----------------------------------------------------
    def structured_forward(self, x):
        """The structured branch alone: x @ structured.T (B, m)."""
        return self.structured.forward(x)[0]

    def sparse_forward(self, x):
        """The sparse branch alone, without dropout: x @ S.T (B, m)."""
        return self._s_matmul(x, self.params["S"])
