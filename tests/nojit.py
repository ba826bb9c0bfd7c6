"""Shared by the kernel tests: run a test module again with Numba's JIT disabled."""
import os
import subprocess
import sys


def rerun_without_jit(test_file, timeout):
    """Run the test module `test_file` again in a subprocess with NUMBA_DISABLE_JIT=1, so the kernels'
    Python source is checked against the same references; fails with the subprocess's output."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(test_file)))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file],
                          cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
