"""The model layer: data, the LSTM and its hand-written BPTT, the language model, the gate matrices,
optimizers, I/O, sampling and batch-1 inference. It knows nothing of how its gate matrices were
chosen or annealed; it builds only on `dkp.kernels`."""
