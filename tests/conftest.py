"""Test-wide settings: one thread per process (the machine has 2 cores), fixed seeds."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch

torch.set_num_threads(1)
