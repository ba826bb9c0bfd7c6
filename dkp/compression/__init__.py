"""The compression layer: factor shapes that meet a compression target (pure arithmetic), compressing
a trained dense matrix, building a config's gate matrices, and the anneal of S (training hooks).
Builds on `dkp.core` and `dkp.kernels`."""
