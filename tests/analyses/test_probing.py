"""Probes, patching sweeps and the state transplant on constructed models and planted failures."""
import numpy as np
import pytest
import torch

from analyses.probing import (
    bootstrap_recovery,
    fit_probe,
    make_patching_pairs,
    patching_sweep,
    probe_accuracy_by_step,
    state_transplant,
    sweep_task,
)
from workbench.constructions import construct
from workbench.tasks import make_task


def test_fit_probe_separable_and_scale_invariant():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(6, 10))
    y = rng.integers(0, 6, size=500)
    X = E[y] * rng.uniform(0.1, 10, size=(500, 1)) + 1e-3 * rng.normal(size=(500, 10))
    probe = fit_probe(X, y, 6)
    assert (probe.predict(X) == y).all()
    assert probe.weight.shape == (11, 6)
    with pytest.raises(ValueError, match="labels"):
        fit_probe(X, y + 6, 6)


def test_bootstrap_recovery_known_values():
    B = 40
    clean, corrupt = np.full(B, 2.0), np.full(B, -2.0)
    LD = np.stack([np.full(B, -2.0), np.full(B, 0.0), np.full(B, 2.0)])[None]  # (1, 3, B)
    ACC = (LD > 0).astype(float)
    rec, rec_ci, acc, acc_ci = bootstrap_recovery(LD, ACC, clean, corrupt, n_boot=200)
    np.testing.assert_allclose(rec[0], [0, 0.5, 1])
    np.testing.assert_allclose(rec_ci[0, :, 0], [0, 0.5, 1], atol=1e-12)  # no variance: a point
    np.testing.assert_allclose(acc[0], [0, 0, 1])
    noisy = LD + np.random.default_rng(0).normal(size=LD.shape)
    _, ci, _, _ = bootstrap_recovery(noisy, ACC, clean, corrupt, n_boot=500)
    assert np.all(ci[..., 0] < ci[..., 1])


def test_probe_on_construction_and_on_planted_drift():
    task = make_task("cyclic:5")
    good = probe_accuracy_by_step(construct(task, "full"), task, train_length=10, test_length=60,
                                  n_train=128, n_test=64)
    assert good.train_accuracy == 1.0 and good.accuracy.min() == 1.0
    assert good.accuracy.shape == (60,)
    drift = construct(task, "rotation")
    with torch.no_grad():
        drift.W_angle += np.pi / (5 * 20)  # breaks after ~20 steps
    bad = probe_accuracy_by_step(drift, task, train_length=10, test_length=60, n_train=128, n_test=64)
    assert bad.accuracy_inside > 0.95
    assert bad.accuracy[40:].mean() < 0.5


def test_patching_sweep_localises_the_corrupted_token():
    task = make_task("group:S3")
    model = construct(task, "full")
    T, pos = 24, 10
    res = sweep_task(model, task, n_pairs=12, length=T, position=pos, n_boot=200)
    state, out, embed = (res.sites.index(s) for s in
                         ("blocks.0.hook_state", "blocks.0.hook_out", "hook_embed"))
    steps = res.steps
    # the state at any step after the corrupted token carries the answer; before it, nothing
    np.testing.assert_allclose(res.recovery[state, steps > pos], 1.0, atol=1e-5)
    np.testing.assert_allclose(res.recovery[state, steps <= pos], 0.0, atol=1e-5)
    # the embedding matters only at the corrupted step; hook_out only at the answer step
    np.testing.assert_allclose(res.recovery[embed], (steps == pos + 1).astype(float), atol=1e-5)
    np.testing.assert_allclose(res.recovery[out], (steps == T).astype(float), atol=1e-5)
    assert res.accuracy[state, -1] == 1.0 and res.accuracy[state, 0] == 0.0
    assert res.recovery_ci.shape == (3, T, 2)
    assert np.all(res.recovery_ci[..., 0] <= res.recovery[..., None][..., 0] + 1e-9)


def test_patching_sweep_bad_inputs():
    task = make_task("parity")
    model = construct(task, "real_diag")
    clean, corrupt, cl, co = make_patching_pairs(task, 4, 8, position=3)
    with pytest.raises(ValueError, match="unknown site"):
        patching_sweep(model, clean, corrupt, cl, co, sites=("blocks.0.hook_nope",))
    with pytest.raises(ValueError, match="steps"):
        patching_sweep(model, clean, corrupt, cl, co, steps=[0, 3])
    with pytest.raises(ValueError, match="shape"):
        patching_sweep(model, clean, corrupt[:, :4], cl, co)


def test_state_transplant_continues_from_the_donor_state():
    task = make_task("fsm:10")
    res = state_transplant(construct(task, "full"), task, n_pairs=64, length=30, t_patch=15)
    assert res.match_b_continued == 1.0
    assert res.match_a == 0.0
    assert res.control_match_b_continued < 0.3
    assert res.n_informative > 0 and res.per_step_b.shape == (15,)


def test_state_transplant_detects_a_model_that_ignores_its_state():
    # a model whose readout does not read the state (rank-deficient: W_U = 0 except a constant
    # direction) cannot follow the transplanted state
    task = make_task("cyclic:5")
    model = construct(task, "rotation")
    with torch.no_grad():
        model.W_U.zero_()
        model.W_U[0, 0] = 1.0
    res = state_transplant(model, task, n_pairs=64, length=20, t_patch=10)
    assert res.match_b_continued < 0.5


def test_plots_render():
    import matplotlib

    matplotlib.use("Agg")
    from analyses.plot.probing import plot_patching_heatmap

    task = make_task("cyclic:3")
    model = construct(task, "full")
    res = sweep_task(model, task, n_pairs=4, length=10, position=4, n_boot=50)
    assert res.plot().axes and res.plot(kind="accuracy").axes and plot_patching_heatmap(res).axes
    pr = probe_accuracy_by_step(model, task, train_length=5, test_length=12, n_train=16, n_test=8)
    assert pr.plot(chance=1 / 3).axes
    tr = state_transplant(model, task, n_pairs=16, length=10, t_patch=5)
    assert tr.plot().axes
