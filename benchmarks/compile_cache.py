"""First-call time of every Numba kernel in a fresh process: compiled cold, then loaded from the
on-disk cache (`@njit(cache=True)`).

    python benchmarks/compile_cache.py

Runs two fresh subprocesses that share an empty, temporary NUMBA_CACHE_DIR: the first compiles
every kernel (float32) and writes the cache, the second loads it. The second column is what a user
waits for after the first run; it should stay well under a second per kernel.
"""
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
from dkp.kernels import kron
from dkp.kernels import sparse
from dkp.kernels import step as fused
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
f = np.float32
A, B = rng.standard_normal((1, 4, 3)).astype(f), rng.standard_normal((1, 5, 2)).astype(f)
x1, x5 = rng.standard_normal((1, 6)).astype(f), rng.standard_normal((5, 6)).astype(f)
dy5 = rng.standard_normal((5, 20)).astype(f)
S = (rng.standard_normal((20, 6)) * (rng.random((20, 6)) < 0.3)).astype(f)
ip, ix, v = sparse.csr_from_dense(S)
bias, z1 = rng.standard_normal(20).astype(f), rng.standard_normal((1, 20)).astype(f)
h1 = rng.standard_normal((1, 5)).astype(f)   # an LSTM step on W 20 x 6: H = 5, one input
calls = {
    "kron_matmul (numba)": lambda: kron.kron_matmul_numba(A, B, x1),
    "csr_matmul": lambda: sparse.csr_matmul(ip, ix, v, x5, 20),
    "csr_matmul_t": lambda: sparse.csr_matmul_t(ip, ix, v, dy5, 6),
    "csr_grad": lambda: sparse.csr_grad(ip, ix, x5, dy5),
    "csr_scatter": lambda: sparse.csr_scatter(ip, ix, v, np.zeros((20, 6), f)),
    "doped_kron_matmul": lambda: fused.doped_kron_matmul(A, B, ip, ix, v, x1),
    "kron_lstm_step (fused)": lambda: fused.kron_lstm_step(A, B, ip, ix, v, bias, x1[:, :1], h1, h1),
    "lstm_cell": lambda: fused.lstm_cell(z1, h1),
}
out = {"import dkp.kernels": t_import}
for name, call in calls.items():
    t = time.perf_counter()
    call()
    out[name] = time.perf_counter() - t
print(json.dumps(out))
"""


def first_calls(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env.pop("NUMBA_DISABLE_JIT", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=root, env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = first_calls(cache_dir)
        warm = first_calls(cache_dir)
    print(f"{'first call of':<26}{'cold (compile)':>16}{'warm (disk cache)':>19}")
    for name in cold:
        print(f"{name:<26}{cold[name]:>15.3f}s{warm[name]:>18.3f}s")
    print(f"{'total':<26}{sum(cold.values()):>15.3f}s{sum(warm.values()):>18.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
