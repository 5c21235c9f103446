"""Hand constructions: exact at length 10,000, with the sizes the paper states."""

import numpy as np
import pytest
import torch

from workbench.constructions import construct, orbit_start_state, representation_matrices
from workbench.tasks import make_task

LONG = 10_000


def final_accuracy(model, task, length=LONG, n=6, seed=1):
    """Final-step accuracy on a small deterministic batch (small n keeps 10k steps fast)."""
    length = task.valid_length(length)
    batch = task.eval_set(length, n_sequences=n, seed=seed)
    with torch.no_grad():
        logits = model(batch.tokens)
    return float((logits[:, -1].argmax(-1) == batch.labels[:, -1]).float().mean())


CASES = [
    # (task, variant, representation, expected hidden size, expected rank or None)
    ("parity", "full", None, 2, None),
    ("parity", "real_diag", None, 1, None),
    ("parity", "rotation", None, 2, None),
    ("cyclic:5", "full", None, 5, None),
    ("cyclic:5", "cp", None, 5, 25),            # exact CP of the FSM tensor: |Q|·|Σ|
    ("cyclic:5", "rotation", None, 2, None),
    ("cyclic:5", "complex_diag", None, 2, None),
    ("cyclic:5", "block", None, 2, None),        # block size 2
    ("cyclic:5", "cp", "rotation", 2, 3),       # rotation solution as CP, rank <= 4
    ("cyclic:50", "rotation", None, 2, None),
    ("fsm:6@3", "full", None, 6, None),
    ("fsm:4:3@1", "cp", None, 4, 12),
    ("modarith:5", "full", None, None, None),
    ("group:S3", "full", "regular", 6, None),
    ("group:S3", "full", "permutation", 3, None),
    ("group:S3", "full", ["2a", "sign"], 3, None),
    ("group:S4", "full", "3b", 3, None),
    ("group:S4", "block", ["3a", "3b"], 6, None),
    ("group:A5/gens", "full", "3a", 3, None),
    ("group:A5/gens", "cp", "permutation", 5, None),
    ("group:Q8", "full", "2a", 4, None),         # quaternionic: real form is 4-dim
    ("group:Z2xZ4", "rotation", None, 4, None),
]


@pytest.mark.parametrize("spec,variant,rep,hidden,rank", CASES)
def test_construction_exact_at_length_10000(spec, variant, rep, hidden, rank):
    task = make_task(spec)
    model = construct(task, variant, rep)
    assert not model.training
    assert model.cfg.variant == variant and model.cfg.normalize in (None, True)
    if hidden is not None:
        assert model.cfg.d_hidden == hidden
    if rank is not None:
        assert model.cfg.rank == rank
    assert model.construction_margin > 0
    assert final_accuracy(model, task) == 1.0


def test_fsm_tensor_is_the_paper_construction():
    task = make_task("fsm:5@0")
    model = construct(task, "full")
    A = model.transition_matrices().numpy()
    aut = task.automaton
    for v in range(task.d_vocab):
        for q in range(aut.n_states):
            col = np.zeros(aut.n_states)
            col[aut.transitions[q, v]] = 1
            assert np.array_equal(A[v][:, q], col)
    assert np.array_equal(model.h0.detach().numpy(), np.eye(aut.n_states)[aut.start])
    # the CP form gives the same matrices with one term per non-zero
    cp = construct(task, "cp")
    assert cp.cfg.rank == aut.n_states * task.d_vocab
    assert torch.allclose(cp.transition_matrices(), model.transition_matrices())


def test_rotation_solution_matches_digest():
    m = 7
    model = construct("cyclic:7", "rotation")
    A = model.transition_matrices().double().numpy()
    for a in range(m):
        t = 2 * np.pi * a / m
        assert np.allclose(A[a], [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]], atol=1e-6)
    W_U = model.W_U.detach().double().numpy()
    h0 = model.h0.detach().double().numpy()
    # readout column c is the orbit point of c: R(2πc/m) h0
    for c in range(m):
        t = 2 * np.pi * c / m
        assert np.allclose(W_U[:, c], np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ h0, atol=1e-6)


def test_representation_through_irreps_decodes_by_orbit():
    task = make_task("group:S4")
    rho, dims, label = representation_matrices(task, ["3a", "2a"])
    assert dims == [3, 2] and label == "3a+2a"
    # orthogonal, homomorphism
    assert np.allclose(rho @ np.swapaxes(rho, 1, 2), np.eye(5))
    G = task.group
    assert np.allclose(rho[G.table[3, 7]], rho[3] @ rho[7])
    h0, margin = orbit_start_state(rho)
    pts = rho @ h0
    gram = pts @ pts.T
    assert np.all(np.argmax(gram, axis=1) == np.arange(24)) and margin > 0.05


def test_bad_requests_raise():
    with pytest.raises(ValueError, match="not faithful"):
        construct("group:S4", "full", "2a")          # factors through S3
    with pytest.raises(ValueError, match="not abelian"):
        construct("group:S3", "rotation")
    with pytest.raises(ValueError, match="elementary abelian 2-groups"):
        construct("cyclic:3", "real_diag")
    with pytest.raises(ValueError, match="unknown representation"):
        construct("group:S3", "full", "standard")
    with pytest.raises(ValueError, match="needs a group task"):
        construct("fsm:5", "full", "regular")
    with pytest.raises(ValueError, match="no exact construction"):
        construct("parity", "positive_diag")
    with pytest.raises(ValueError, match="needs a group task"):
        construct("fsm:5", "rotation")
    with pytest.raises(ValueError, match="dense transitions"):
        construct("fsm:5", "rotation", "fsm")
    with pytest.raises(ValueError, match="2-dim real blocks"):
        construct("group:S3", "complex_diag", ["2a"])


def test_direct_sum_construction_reaches_every_summand():
    """The start state has a component in every summand, so the model reaches (and the
    representation analysis finds) the whole direct sum asked for."""
    from analyses.groups.representations import recover_representation

    task = make_task("group:S3")
    res = recover_representation(construct(task, "full", ["2a", "trivial"]), task)
    assert res.decomposition_string() == "2a ⊕ trivial" and res.faithful


def test_disguise_keeps_the_function_and_rejects_a_smaller_space():
    import numpy as np
    import torch

    from workbench.constructions import construct, disguise
    from workbench.tasks import make_task

    task = make_task("group:S3")
    model = construct(task, "full", ["2a", "trivial"])
    hidden_model = disguise(model, task, 7, np.random.default_rng(0))
    tokens = task.eval_set(40, n_sequences=16, seed=3).tokens
    with torch.no_grad():
        assert torch.equal(model(tokens).argmax(-1), hidden_model(tokens).argmax(-1))
    with pytest.raises(ValueError, match="hidden=3"):
        disguise(model, task, 3, np.random.default_rng(0))
