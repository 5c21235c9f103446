"""Property tests: what the representation and comparison analyses report does not depend on the
basis of the hidden state or on a positive scale per token.

Both are symmetries of a normalized bilinear model: with ``A_v -> c_v T A_v T^-1``, ``h0 -> T h0``
and ``W_U -> T^-T W_U`` every state is ``T h`` times a positive number, so the logits are positive
multiples of the original ones and every prediction is unchanged. An analysis that claims to find
*the* representation a model computes must report the same one after such a change.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyses import compare_models, recover_representation
from workbench.constructions import construct
from workbench.tasks import make_task

CASES = [("group:S3", ["2a", "sign"]), ("group:D4", ["2a", "1a"]), ("cyclic:5", "rotation")]
PROPERTY = settings(max_examples=6, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def random_basis(rng: np.random.Generator, n: int) -> np.ndarray:
    """An invertible n x n matrix with singular values in [0.5, 2] (well conditioned, far from
    orthogonal, so a test of basis invariance does not pass by accident of a rotation)."""
    q1, _ = np.linalg.qr(rng.standard_normal((n, n)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return q1 @ np.diag(rng.uniform(0.5, 2.0, n)) @ q2


def transformed(model, T: np.ndarray, scales: np.ndarray):
    """A copy of a `full` model with A_v -> scales[v] T A_v T^-1, h0 -> T h0, W_U -> T^-T W_U."""
    import copy

    out = copy.deepcopy(model)
    T64 = torch.as_tensor(T, dtype=torch.float64)
    Tinv = torch.linalg.inv(T64)
    with torch.no_grad():
        W = out.W.double()                                   # [H, H, V]: W[:, :, v] = A_v
        A = torch.einsum("ij,jkv,kl->ilv", T64, W, Tinv) * torch.as_tensor(scales, dtype=torch.float64)
        out.W.copy_(A.to(out.W.dtype))
        out.h0.copy_((T64 @ out.h0.double()).to(out.h0.dtype))
        out.W_U.copy_((Tinv.T @ out.W_U.double()).to(out.W_U.dtype))
    return out


@pytest.fixture(scope="module")
def references():
    refs = {}
    for spec, representation in CASES:
        task = make_task(spec)
        model = construct(task, "full", representation)
        refs[spec] = (task, model, recover_representation(model, task), compare_models(model, task))
    return refs


@PROPERTY
@given(case=st.sampled_from([c[0] for c in CASES]), seed=st.integers(0, 2**32 - 1))
def test_representation_is_invariant_to_basis_and_token_scales(references, case, seed):
    task, model, ref, _ = references[case]
    rng = np.random.default_rng(seed)
    H, V = model.cfg.d_hidden, model.cfg.d_vocab
    scales = rng.uniform(0.5, 2.0, V)
    moved = transformed(model, random_basis(rng, H), scales)
    # The change is a symmetry: predictions are unchanged.
    tokens = task.eval_set(30, n_sequences=16).tokens
    moved.eval()
    model.eval()
    assert torch.equal(moved(tokens).argmax(-1), model(tokens).argmax(-1))

    rep = recover_representation(moved, task)
    assert rep.decomposition_string() == ref.decomposition_string()
    np.testing.assert_array_equal(rep.multiplicities, ref.multiplicities)
    assert rep.is_representation and rep.faithful
    assert rep.homomorphism_error < 1e-4 and rep.residual < 1e-4, (rep.homomorphism_error, rep.residual)
    np.testing.assert_allclose(rep.characters, ref.characters, atol=1e-4)
    # The scale the analysis divides out of each token is the one put in, times the original.
    np.testing.assert_allclose(rep.token_scales / ref.token_scales, scales, rtol=1e-4)


@PROPERTY
@given(case=st.sampled_from([c[0] for c in CASES]), seed=st.integers(0, 2**32 - 1))
def test_comparison_is_invariant_to_basis_and_token_scales(references, case, seed):
    task, model, _, ref = references[case]
    rng = np.random.default_rng(seed)
    moved = transformed(model, random_basis(rng, model.cfg.d_hidden), rng.uniform(0.5, 2.0, model.cfg.d_vocab))
    cmp = compare_models(moved, task)
    a, b = cmp.summary(), ref.summary()
    assert a["intertwiner_dim"] == b["intertwiner_dim"] == a["expected_intertwiner_dim"]
    assert a["equivalent"] == b["equivalent"]
    assert a["learned"] == b["learned"] and a["constructed"] == b["constructed"]
    assert abs(a["character_distance"] - b["character_distance"]) < 1e-4
    assert a["residual"] < 1e-4
    assert a["causal_accuracy"] == b["causal_accuracy"] == 1.0


@pytest.fixture(scope="module")
def trained():
    from workbench import load_checkpoint

    model, task = load_checkpoint("groupS3_full_s0")
    return model, task, recover_representation(model, task)


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_a_trained_approximate_representation_keeps_its_irreps_in_any_basis(trained, seed):
    """On a trained model (an approximate representation) the named irreps, faithfulness and
    exactness do not depend on the basis. The error *sizes* do, by a bounded factor: the unitary
    gauge that makes an exact representation's errors vanish is only a best fit for an approximate
    one, and which fit is found depends on the basis (on groupS3_full_s0, seeds 0-2 moved the
    homomorphism error from 0.0246 to 0.024-0.030 and the residual from 0.0072 to 0.0072-0.011)."""
    model, task, ref = trained
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 2.0, model.cfg.d_vocab)
    rep = recover_representation(transformed(model, random_basis(rng, model.cfg.d_hidden), scales), task)
    assert rep.decomposition_string() == ref.decomposition_string() == "2a"
    assert rep.faithful == ref.faithful and rep.is_representation == ref.is_representation
    assert 0.5 < rep.homomorphism_error / ref.homomorphism_error < 2.0
    assert 0.5 < rep.residual / ref.residual < 2.0
    np.testing.assert_allclose(rep.token_scales / ref.token_scales, scales, rtol=1e-2)
