"""Snapping to the exact representation: a planted near-representation is snapped back to the
construction it hides, and the snapped model generalises where the noisy one fails."""
import numpy as np
import pytest

from analyses.groups.snapping import snap_transitions, matrices_accuracy, snapped_representation
from analyses.groups.representations import recover_representation, task_group_data
from workbench.constructions import construct, disguise
from workbench.tasks import make_task
from workbench.training import evaluate


def _noisy_rotation(task, delta, seed=0):
    """The rotation construction of cyclic:m with every token turned by an extra delta (H = 2)."""
    model = construct(task, "rotation")
    A = model.transition_matrices().double().numpy()
    c, s = np.cos(delta), np.sin(delta)
    return A @ np.array([[c, -s], [s, c]])


def test_numpy_dynamics_match_the_models_own_evaluation():
    task = make_task("group:S3")
    model = disguise(construct(task, "full", ["2a"]), task, hidden=6, rng=np.random.default_rng(0), noise=0.02)
    A = model.transition_matrices().double().numpy()
    h0 = model.h0.detach().double().numpy()
    W_U = model.W_U.detach().double().numpy()
    mine = matrices_accuracy(A, h0 / np.linalg.norm(h0), W_U, task, [10, 200], n_sequences=64)
    theirs = evaluate(model, task, [10, 200], n_sequences=64)
    assert mine == pytest.approx(theirs, abs=1 / 64 + 1e-9)  # float32 model vs float64 numpy: at most one flip


def test_a_noisy_representation_is_snapped_back_and_then_generalises():
    task = make_task("group:S3")
    exact = construct(task, "full", ["2a"])
    model = disguise(exact, task, hidden=6, rng=np.random.default_rng(1), noise=0.01)
    rep = recover_representation(model, task)
    assert rep.homomorphism_error > 1e-3          # the planted model is only approximate
    res = snap_transitions(model, task, lengths=(50, 3000), n_sequences=64, rep=rep)
    assert res.irreps == "2a"
    assert res.snapped_homomorphism_error < 1e-10
    assert 1e-3 < res.max_token_distance < 0.2
    assert res.accuracy_snapped[3000] == 1.0 and res.accuracy_snapped[50] == 1.0
    assert res.accuracy_learned[3000] < res.accuracy_snapped[3000]
    assert "2a" in res.sentence() and res.summary()["accuracy_snapped"]["3000"] == 1.0
    assert res.snapped_matrices.shape == (task.d_vocab, 6, 6)


def test_snapping_an_exact_construction_changes_nothing():
    task = make_task("group:S3")
    model = construct(task, "full", ["2a", "sign"])
    rep = recover_representation(model, task)
    group, _ = task_group_data(task)
    snapped = snapped_representation(rep, group.irreps())
    np.testing.assert_allclose(snapped, rep.element_matrices, atol=1e-6)  # float32 weights
    res = snap_transitions(model, task, lengths=(100,), n_sequences=16, rep=rep)
    assert res.max_token_distance < 1e-6
    assert res.accuracy_learned == res.accuracy_snapped == {100: 1.0}


def test_refuses_what_it_cannot_snap():
    task = make_task("group:S3")
    rep = recover_representation(construct(task, "full", ["2a"]), task)
    rep.change_of_basis = None
    group, _ = task_group_data(task)
    with pytest.raises(ValueError, match="no block-diagonal basis"):
        snapped_representation(rep, group.irreps())
    with pytest.raises(ValueError, match="need A"):
        matrices_accuracy(np.eye(2)[None], np.ones(3), np.ones((2, 2)), task, [5])
