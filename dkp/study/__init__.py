"""The study pipeline: named experiments, the runner that trains their arms over seeds, the records
it writes, and one engine that decides every pre-registered hypothesis from those records.

    catalog     the named experiments (arms as training configs, scales, seeds each plan runs)
    runner      trains every arm of an experiment over seeds, on this machine or a Dask cluster
                (`executors`), writing one JSON record per experiment as runs land
    probes      what a run measures while it trains (the training hooks the runner installs)
    metrics     per-run numbers read from a record (M1-M6 of the search, sizes, 8-bit storage)
    engine      hypotheses as data, evaluated under the project's rule, and the one printer
    plans       the declared hypotheses and tables of each study: the course's effects, the
                co-matrix adaptation search (with its replication), the whole model
    report      tables and verdicts of a results folder (`python -m dkp report DIR`)

Nothing here imports the course (`dkp.course`), which teaches from it."""
