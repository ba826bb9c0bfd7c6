"""The Numba kernels, the only code in dkp that imports numba, each beside the plain NumPy reference
(`*_ref`) it is tested against:

    arith    pure arithmetic the kernels share (the Kronecker product's cost per order, layouts)
    kron     the Kronecker product W = sum_k A[k] kron B[k]: forward, transpose and factor gradients
    sparse   CSR sparse products: forward, transpose, gradient of the values, scatter
    step     inference only: the doped Kronecker forward and one LSTM step fused in one call
    cell     training: the LSTM cell's elementwise equations, forward and backward, one call a step
    transformer  training: the transformer's GELU, LayerNorm and causal softmax (with its dropout),
             forward and backward, one call each

Nothing here knows about gate matrices or layers; `dkp.core.weights`, `dkp.core.lstm_fast`,
`dkp.core.layers` and `dkp.core.attention` build on these. This
file imports nothing, so `dkp.kernels.arith` loads without Numba.
Set NUMBA_DISABLE_JIT=1 to run every kernel as plain Python (slow, for debugging and coverage).
"""
