"""Shared by tests/ and notebooks/: one directory of --quick experiment results per pytest session.

tests/test_experiments.py runs every --quick experiment into it, and the notebooks (run by nbval in
kernels that inherit this environment) find those runs there instead of training them again.
"""
import os
import shutil
import tempfile

from dkp.study.runner import QUICK_RESULTS_ENV

_made = []


def pytest_configure(config):
    if not os.environ.get(QUICK_RESULTS_ENV):
        _made.append(tempfile.mkdtemp(prefix="dkp-quick-"))
        os.environ[QUICK_RESULTS_ENV] = _made[0]


def pytest_unconfigure(config):
    if _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)
        os.environ.pop(QUICK_RESULTS_ENV, None)
