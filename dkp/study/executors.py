"""Where an experiment's runs execute. The runs are independent, so anything with
`submit(fn, *args)` returning a `concurrent.futures.Future` can run them:

    jobs=1                 this process, one run after another (no executor at all)
    jobs=N                 a pool of N worker processes on this machine
    scheduler="local"      a Dask LocalCluster of single-threaded workers on this machine
    scheduler="tcp://..."  the workers of a running Dask scheduler, on any number of machines

Dask is optional (`pip install "dkp[cluster]"`) and imported only when a scheduler is asked for.
Every worker runs with one BLAS thread, so a run's numbers depend on its seed, not on the worker
that ran it: the same seeds give the same results whatever the executor.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager

CLUSTER_EXTRA = 'pip install "dkp[cluster]"'


def single_blas_thread():
    """Workers started from now on use one BLAS thread each (set before they start: the libraries
    read it when they load). A variable the user set is kept."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _dask():
    try:
        import distributed
    except ImportError:
        raise ImportError(f"--scheduler runs experiments on Dask, which is not installed: {CLUSTER_EXTRA}") from None
    return distributed


CONNECT_TIMEOUT = "5s"   # how long to wait for a remote scheduler to answer


@contextmanager
def executor(jobs=1, scheduler=None, echo=print):
    """The executor for `jobs` local processes or a Dask `scheduler` ("local" or an address such as
    tcp://host:8786); None for jobs=1 without a scheduler (the runs stay in this process).
    `echo` receives one line saying where the runs go (the Dask dashboard's address among it).

    On Dask, a run whose worker dies (killed, out of memory, its machine lost) is started again on
    another worker, up to the scheduler's `distributed.scheduler.allowed-failures` times (3 unless
    configured), and then fails with KilledWorker. A run that raises is not retried: the same seed
    would raise again."""
    if scheduler:
        distributed = _dask()
        single_blas_thread()
        cluster = None
        if scheduler == "local":
            # one single-threaded worker process per job (per core with jobs=0 or 1)
            n = jobs if jobs > 1 else (os.cpu_count() or 1)
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               dashboard_address=":0")
        try:
            # a scheduler that does not answer fails in seconds, not after Dask's default 30 s
            client = distributed.Client(cluster if cluster is not None else scheduler,
                                        timeout=None if cluster is not None else CONNECT_TIMEOUT)
        except OSError as e:
            if cluster is not None:
                cluster.close()
            raise OSError(f"--scheduler {scheduler!r}: could not reach a Dask scheduler there ({e}); start one "
                          f"with `dask scheduler` and workers with `dask worker ADDRESS`") from None
        try:
            workers = len(client.scheduler_info().get("workers", {}))
            echo(f"dask: {workers} worker(s) at {client.scheduler.address}; dashboard {client.dashboard_link}")
            yield client.get_executor(pure=False)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    elif jobs > 1:
        single_blas_thread()
        import multiprocessing as mp
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            yield pool
    else:
        yield None


def run_all(calls, pool=None):
    """Run `calls` ({key: (fn, args)}) on `pool` (None: here, one after another) and yield
    (key, result, error) as each finishes: error is None, or the exception that ended the call
    (its result is then None). A failed call does not stop the others."""
    if pool is None:
        for key, (fn, args) in calls.items():
            try:
                result = fn(*args)
            except Exception as e:  # noqa: BLE001 - reported with its key, the others go on
                yield key, None, e
            else:
                yield key, result, None
        return
    futures = {pool.submit(fn, *args): key for key, (fn, args) in calls.items()}
    for future in as_completed(futures):
        error = future.exception()
        yield futures[future], (None if error else future.result()), error
