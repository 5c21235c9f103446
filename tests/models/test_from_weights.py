"""`HookedBilinearRNN.from_weights`: a model from plain tensors, sizes inferred, shapes checked."""
import numpy as np
import pytest
import torch

from workbench.checkpoints import load_checkpoint, save_checkpoint
from workbench.constructions import construct
from workbench.models import HookedBilinearRNN
from workbench.tasks import make_task

from .conftest import BILINEAR, make

# (task, variant, representation): one exact construction per constructible variant.
CONSTRUCTED = [
    ("group:S3", "full", None),
    ("group:S3", "cp", None),
    ("fsm:4", "block", None),
    ("cyclic:5", "rotation", None),
    ("cyclic:5", "complex_diag", None),
    ("parity", "real_diag", None),
]


def _tokens(task, B=16, T=40, seed=0):
    return task.sample(B, T, torch.Generator().manual_seed(seed)).tokens


@pytest.mark.parametrize("spec,variant,rep", CONSTRUCTED)
def test_from_constructions_own_tensors_identical_logits(spec, variant, rep):
    task = make_task(spec)
    ref = construct(task, variant, rep)
    model = HookedBilinearRNN.from_weights(variant, dict(ref.state_dict()))
    assert model.cfg.to_dict() == ref.cfg.to_dict()
    tokens = _tokens(task)
    with torch.no_grad():
        assert torch.equal(model(tokens), ref(tokens))


@pytest.mark.parametrize("variant,kw", BILINEAR + [("full", {"d_embed": 4, "additive": True}),
                                                   ("cp", {"rank": 3, "d_embed": 3})])
def test_every_variant_round_trips_its_own_state_dict(variant, kw, tokens):
    ref = make(variant, **kw).eval()
    tensors = {k: v.numpy() for k, v in ref.state_dict().items()}   # plain arrays work too
    model = HookedBilinearRNN.from_weights(variant, tensors)
    assert model.cfg.to_dict() == ref.cfg.to_dict()
    with torch.no_grad():
        assert torch.equal(model(tokens), ref(tokens))


def test_full_from_token_matrices_matches_W():
    task = make_task("group:S3")
    ref = construct(task, "full")
    A = ref.transition_matrices()                                  # [V, H, H]
    model = HookedBilinearRNN.from_weights(
        "full", {"token_matrices": A, "h0": ref.h0, "W_U": ref.W_U})
    assert model.cfg.d_vocab == 6 and model.cfg.d_hidden == 6
    tokens = _tokens(task)
    with torch.no_grad():
        assert torch.equal(model(tokens), ref(tokens))
        assert torch.equal(model.transition_matrices(), A)


def test_token_matrices_through_a_learned_embedding():
    torch.manual_seed(0)
    V, H = 3, 4
    A = torch.randn(V, H, H)
    E = torch.randn(V, V)                                          # invertible: exact
    model = HookedBilinearRNN.from_weights(
        "full", {"token_matrices": A, "W_E": E, "h0": torch.ones(H), "W_U": torch.randn(H, 2)})
    assert model.cfg.d_embed == V
    assert torch.allclose(model.transition_matrices(), A, atol=1e-4)


def test_overrides_apply_and_clashes_name_the_tensor():
    ref = make("real_diag")
    sd = dict(ref.state_dict())
    m = HookedBilinearRNN.from_weights("real_diag", sd, normalize=False, freeze_transition=True)
    assert m.cfg.normalize is False and not m.W_diag.requires_grad
    with pytest.raises(ValueError, match=r"tensor 'W_diag' has shape \[5, 8\]; expected \[7, 8\]"):
        HookedBilinearRNN.from_weights("real_diag", sd, d_vocab=7)
    with pytest.raises(ValueError, match="not ModelConfig fields"):
        HookedBilinearRNN.from_weights("real_diag", sd, hidden=8)


def test_bad_tensors_get_clear_errors():
    sd = dict(make("full").state_dict())
    with pytest.raises(ValueError, match=r"missing tensors .*h0 \[8\]"):
        HookedBilinearRNN.from_weights("full", {k: v for k, v in sd.items() if k != "h0"})
    with pytest.raises(ValueError, match=r"tensor 'h0' has shape \[7\]; expected \[8\]"):
        HookedBilinearRNN.from_weights("full", {**sd, "h0": torch.ones(7)})
    with pytest.raises(ValueError, match=r"unexpected tensors \['W_gate'\]"):
        HookedBilinearRNN.from_weights("full", {**sd, "W_gate": torch.ones(5, 2)})
    with pytest.raises(ValueError, match=r"missing tensor 'W' \[H, H, D\]"):
        HookedBilinearRNN.from_weights("full", {"h0": sd["h0"], "W_U": sd["W_U"]})
    with pytest.raises(ValueError, match=r"tensor 'W' has shape \[8, 8\]; expected 3 dims"):
        HookedBilinearRNN.from_weights("full", {**sd, "W": torch.ones(8, 8)})
    with pytest.raises(ValueError, match="either 'W'"):
        HookedBilinearRNN.from_weights("full", {**sd, "token_matrices": torch.ones(5, 8, 8)})
    with pytest.raises(ValueError, match=r"'token_matrices' has shape \[5, 8, 7\]"):
        HookedBilinearRNN.from_weights("full", {"token_matrices": torch.ones(5, 8, 7),
                                                "h0": sd["h0"], "W_U": sd["W_U"]})
    with pytest.raises(ValueError, match="NaN/inf"):
        HookedBilinearRNN.from_weights("full", {**sd, "h0": torch.full((8,), float("nan"))})
    with pytest.raises(ValueError, match="variant='lstm'; accepted: full"):
        HookedBilinearRNN.from_weights("lstm", sd)
    with pytest.raises(ValueError, match="dtype torch.complex64"):
        HookedBilinearRNN.from_weights("full", {**sd, "h0": torch.ones(8, dtype=torch.complex64)})


def test_from_weights_model_saves_and_loads_like_any_checkpoint(tmp_path):
    task = make_task("cyclic:5")
    ref = construct(task, "rotation")
    model = HookedBilinearRNN.from_weights(
        "rotation", {k: np.asarray(v) for k, v in ref.state_dict().items()})
    save_checkpoint(tmp_path / "ck", model, task.spec, {"source": "from_weights"}, {"accuracy": {}})
    loaded, task2 = load_checkpoint(tmp_path / "ck")
    tokens = _tokens(task)
    with torch.no_grad():
        assert torch.equal(loaded(tokens), ref(tokens))
    assert task2.spec == "cyclic:5"
