"""The training layer: named configs, the loop (SGD over BPTT windows with hooks between steps),
evaluation, checkpoints and resume. Builds on `dkp.compression`, `dkp.core` and `dkp.kernels`."""
