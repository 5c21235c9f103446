"""Test-wide settings: one thread per process (the machine has 2 cores), fixed seeds."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")
# BLAS threads fight over the 2 cores: a 60x60 SVD went from 1 ms to 15 ms with the default.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402 (the thread variables above must be set before torch loads BLAS)

torch.set_num_threads(1)
