"""dkp: doped Kronecker products for LSTM language models, in NumPy and Numba, as a course.

The package is seven layers; each imports only from the layers above it in this list (a test walks
the imports and fails on an upward import or a cycle):

    kernels      the Numba code (Kronecker, sparse, the fused inference step), each kernel beside
                 its NumPy reference; the only place that imports numba
    core         data, the LSTM layer and its hand-written BPTT, the language models (LSTM and
                 transformer), the gate matrices (`core.weights`), optimizers, checkpoint I/O,
                 sampling, batch-1 inference
    compression  factor shapes for a target, compression of a trained matrix, config -> gate
                 matrices, and the changes scheduled while a model trains (the dense warm-up's
                 switch, the anneal of S, co-matrix dropout's schedule), one module each
    training     configs (each field declares its own flag), the training loop, evaluation,
                 checkpoints and resume
    bench        what `benchmarks/` times and how its speed records are read
    study        the named experiments, their runner and records, and the one hypotheses engine
                 that decides every plan's verdicts (`study.plans`) and prints them
    course       teaching only: notebook helpers, figures, widgets and explorers

Where to change things: the LSTM cell is `core/lstm.py`; a new gate-matrix structure is a class in
`core/weights/` plus its entry in `compression/structures.py`; a new experiment is its arms in
`study/catalog.py`, its hypotheses a declaration in `study/plans/`; a new config field is one
`option(...)` in `training/configs.py`. The command line (`python -m dkp`) is `dkp/__main__.py`.
"""
