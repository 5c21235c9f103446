import pytest
import torch

from workbench.models import ModelConfig, build_model

# (variant, extra config) for every bilinear variant, small enough for fast tests.
BILINEAR = [
    ("full", {}),
    ("cp", {"rank": 6}),
    ("block", {"block_size": 2}),
    ("block", {"block_size": 1}),
    ("rotation", {}),
    ("complex_diag", {}),
    ("real_diag", {}),
    ("positive_diag", {"n_layers": 2}),
]
BASELINES = [("lstm", {}), ("gru", {"n_layers": 2}), ("elman", {}), ("transformer", {"n_layers": 2})]


def make(variant, V=5, H=8, C=3, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(ModelConfig(variant, V, H, C, **kw))


@pytest.fixture
def tokens():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 5, (3, 9), generator=g)
