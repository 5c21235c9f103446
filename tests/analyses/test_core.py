"""analyses._core.model_transitions: the one way analyses read a model's transitions."""
import numpy as np
import pytest

from analyses._core import model_transitions
from workbench.models import ModelConfig, build_model


def test_stacked_positive_diag_is_read_at_its_first_layer():
    model = build_model(ModelConfig("positive_diag", d_vocab=3, d_hidden=4, n_classes=2, n_layers=2)).eval()
    A, h0 = model_transitions(model)
    full = model.transition_matrices().detach().double().numpy()
    assert A.shape == (3, 4, 4) and np.allclose(A, full[0] if full.ndim == 4 else full)
    assert h0 is not None and np.allclose(h0, model.blocks[0].h0.detach().double().numpy())


@pytest.mark.parametrize("cfg", [ModelConfig("positive_diag", 3, 4, 2), ModelConfig("full", 3, 4, 2, additive=True)],
                         ids=["positive_diag", "additive"])
def test_linear_access_rejects_affine_updates(cfg):
    model = build_model(cfg).eval()
    model_transitions(model)                       # spectra may still read them
    with pytest.raises(ValueError, match="affine"):
        model_transitions(model, linear=True)      # a representation may not


def test_baselines_have_no_transitions():
    with pytest.raises(ValueError, match="lstm"):
        model_transitions(build_model(ModelConfig("lstm", 3, 4, 2)))
