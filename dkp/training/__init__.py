"""The training layer: named configs, the loop (a training step, and the changes a config schedules between steps),
evaluation, checkpoints and resume. Builds on `dkp.compression`, `dkp.core` and `dkp.kernels`."""
