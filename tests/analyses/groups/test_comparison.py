"""Learned-vs-constructed comparison on planted answers."""

import json

import numpy as np
import pytest
import torch

from analyses.groups.comparison import (
    character_distance,
    compare_models,
    compare_representations,
    generating_subset,
    intertwiner_space,
    summarize,
    trajectory_fit,
)
from analyses.groups.representations import recover_from_matrices, recover_representation
from analyses.groups import representations as rep_summary
from workbench.constructions import construct, disguise
from workbench.models import ModelConfig, build_model
from workbench.tasks import make_task


def recover_arrays(group, A, h0, tokens=None):
    tokens = np.arange(group.order) if tokens is None else np.asarray(tokens)
    return recover_from_matrices(A, h0, group.table, tokens, group.irreps(), group.irrep_names(), group.name)


@pytest.fixture(scope="module")
def s4():
    return make_task("group:S4")


def test_construction_against_itself_in_another_basis(s4):
    rng = np.random.default_rng(0)
    c = construct(s4, "full", ["3a", "3a", "2a"])      # multiplicity 2: a 4-dim commutant block
    learned = recover_representation(disguise(c, s4, 11, rng), s4)
    constructed = recover_representation(c, s4)
    res = compare_representations(learned, constructed, "self")
    # model weights are float32: "zero" means ~1e-7 here
    assert res.equivalent and res.character_distance < 1e-5
    assert res.similarity_residual < 1e-5 and res.start_state_residual < 1e-5
    # full intertwiner dimension: Σ m² = 2² + 1² (Schur), found numerically
    assert res.intertwiner_dim == res.expected_intertwiner_dim == 5
    assert res.intertwiner_gap[1] > 1e3 * max(res.intertwiner_gap[0], 1e-14)
    assert res.trajectory_r2 > 1 - 1e-8
    assert max(res.block_residuals) < 1e-5 and len(res.block_residuals) == 3


def test_block_and_generic_intertwiner_counts_agree(s4):
    rng = np.random.default_rng(1)
    c = construct(s4, "full", "regular")
    L = recover_representation(disguise(construct(s4, "full", ["3a", "trivial"]), s4, 6, rng), s4)
    C = recover_representation(c, s4)
    res = compare_representations(L, C)              # block path (construction is decomposed)
    gens = generating_subset(s4.group.table, range(24))
    dim, sv, basis = intertwiner_space(C.element_matrices[gens], L.element_matrices[gens])
    assert res.intertwiner_dim == dim == 3 + 1        # Σ m_l m_c = 1·3 + 1·1
    # every basis element intertwines
    for X in basis:
        assert np.allclose(X @ C.element_matrices, L.element_matrices @ X, atol=1e-5)
    # the learned representation is a quotient of the regular one: trajectory map exact
    assert not res.equivalent and res.trajectory_r2 > 1 - 1e-8 and res.intertwining_residual < 1e-5


def test_inequivalent_same_dimension(s4):
    """3a and 3b = 3a ⊗ sign: same dimension, different characters, no intertwiner."""
    a = recover_representation(construct(s4, "full", "3a"), s4)
    b = recover_representation(construct(s4, "full", "3b"), s4)
    res = compare_representations(a, b)
    assert not res.equivalent
    assert res.intertwiner_dim == 0 == res.expected_intertwiner_dim
    assert abs(res.character_distance - np.sqrt(2)) < 1e-5
    assert "not equivalent" in res.sentence()


def test_noisy_learned_model_end_to_end(s4):
    """Planted noise: the residuals report it; the causal swap keeps 100 % at length 500."""
    rng = np.random.default_rng(2)
    c = construct(s4, "full", ["3b", "2a"])
    learned = disguise(c, s4, 8, rng, noise=1e-6)
    res = compare_models(learned, s4, n_sequences=32)
    L, C = res.learned, res.constructed
    assert L.is_representation and L.faithful and L.decomposition_string() == "3b ⊕ 2a"
    assert C.decomposition_string().startswith("3×3a ⊕ 3×3b")   # the regular (FSM) construction
    assert res.intertwiner_dim == 3 + 2 == res.expected_intertwiner_dim
    assert 1e-8 < res.residual < 1e-3
    assert res.causal_accuracy == 1.0 and res.causal_length == 500
    out = summarize(learned, s4)
    json.dumps(out, allow_nan=False)
    assert {"construction", "character_distance", "intertwiner_dim", "residual", "causal_accuracy"} <= set(out)
    assert out["matched"]["equivalent"] and out["matched"]["character_distance"] < 1e-4
    r = rep_summary.summarize(learned, s4)
    json.dumps(r, allow_nan=False)
    assert r["faithful"] and {i["name"] for i in r["irreps"]} == {"3b", "2a"}


def test_causal_swap_breaks_a_broken_model():
    """A model that is not a representation: the numbers say so, and the swap (into the
    learned model's own readout) does not rescue it."""
    task = make_task("cyclic:5")
    torch.manual_seed(0)
    model = build_model(ModelConfig("full", 5, 4, 5)).eval()
    res = compare_models(model, task, n_sequences=64)
    L = res.learned
    assert not L.is_representation
    assert L.homomorphism_error > 1e-2
    assert res.causal_accuracy < 0.9
    assert "not a representation" in L.sentence()
    json.dumps(summarize(model, task), allow_nan=False)


def test_rotation_models_and_pure_helpers():
    task = make_task("cyclic:7")
    rot = construct(task, "rotation")
    res = compare_models(rot, task, n_sequences=16)
    L = res.learned
    assert res.equivalent and res.similarity_residual < 1e-5 and res.causal_accuracy == 1.0
    assert character_distance(np.ones(4), np.ones(4)) == 0.0
    states = np.random.default_rng(3).normal(size=(10, 3))
    M, r2 = trajectory_fit(states, states @ np.diag([1.0, 5.0, -2.0]))
    assert np.allclose(M, np.diag([1.0, 5.0, -2.0])) and r2 > 1 - 1e-12
    with pytest.raises(ValueError, match="different groups"):
        compare_representations(L, recover_representation(construct("cyclic:5", "rotation"), make_task("cyclic:5")))


def test_comparison_plot(s4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analyses.plot.representations import plot_comparison

    a = recover_representation(construct(s4, "full", "3a"), s4)
    for other in ("3a", "regular"):
        res = compare_representations(a, recover_representation(construct(s4, "full", other), s4))
        fig = plot_comparison(res)
        assert len(fig.axes) == 2
        plt.close(fig)
