"""The compression layer: factor shapes that meet a compression target (pure arithmetic), compressing
a trained dense matrix, building a config's gate matrices, and the changes the training loop makes
between steps: the dense warm-up's switch (teacher.py), the anneal of S (anneal.py), co-matrix
dropout's schedule (cmr.py). Builds on `dkp.core` and `dkp.kernels`."""
