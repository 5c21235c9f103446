"""Spectra on exact hand-built matrices (ground truth known) and planted failures."""
import math

import numpy as np
import pytest

from analyses._core import model_transitions, reachable_subspace
from analyses.spectral import (
    analyze_spectra,
    commutator_norms,
    lyapunov_exponents,
    normalize_transitions,
    token_periods,
)


def rot(t):
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def blockdiag(*bs):
    n = sum(b.shape[0] for b in bs)
    out = np.zeros((n, n))
    i = 0
    for b in bs:
        k = b.shape[0]
        out[i:i + k, i:i + k] = b
        i += k
    return out


def cyclic_rotations(m, freqs=(1,), eps=0.0, scales=None):
    """A_a = diag of R(2 pi k a / m + a eps) blocks, times a positive per-token scale."""
    scales = np.ones(m) if scales is None else scales
    return np.stack([scales[a] * blockdiag(*[rot(2 * np.pi * k * a / m + a * eps) for k in freqs])
                     for a in range(m)])


def periods_cyclic(m):
    return np.array([m // math.gcd(a, m) for a in range(m)])


def test_exact_cyclic_roots_of_unity_and_frequencies():
    m = 5
    rng = np.random.default_rng(0)
    A = cyclic_rotations(m, freqs=(1, 2), scales=rng.uniform(0.3, 3, m))
    P = rng.normal(size=(4, 4)) + 3 * np.eye(4)  # a well-conditioned change of basis
    A = np.linalg.inv(P) @ A @ P
    res = analyze_spectra(A, np.linalg.inv(P) @ np.array([1, 0, 1, 0.]), periods=periods_cyclic(m),
                          cyclic_m=m)
    assert res.reachable_dim == 4
    assert res.max_phase_error < 1e-9
    assert res.frequencies == [1, 2]
    np.testing.assert_allclose(np.abs(res.eigenvalues), 1, atol=1e-9)
    assert res.persistent.all()
    assert res.max_commutator < 1e-9
    assert math.isinf(res.spectral_break_length)


def test_planted_phase_error_is_measured_and_predicts_break():
    m, eps = 5, 1e-3
    A = cyclic_rotations(m, eps=eps)
    res = analyze_spectra(A, np.array([1, 0.]), periods=periods_cyclic(m), cyclic_m=m)
    # token a is off by a * eps: the worst is token m-1
    assert res.max_phase_error == pytest.approx((m - 1) * eps, rel=1e-6)
    assert res.phase_break_length == pytest.approx(np.pi / (m * (m - 1) * eps), rel=1e-6)
    assert res.spectral_break_length == pytest.approx(res.phase_break_length)
    assert res.frequencies == [1]


def test_scale_invariance_of_normalized_spectrum():
    m = 7
    A = cyclic_rotations(m, freqs=(3,))
    rng = np.random.default_rng(1)
    r1 = analyze_spectra(A, np.array([1, 0.]))
    r2 = analyze_spectra(A * rng.uniform(0.1, 10, m)[:, None, None], np.array([1, 0.]))
    np.testing.assert_allclose(r1.eigenvalues, r2.eigenvalues, atol=1e-12)
    _, radius = normalize_transitions(A * 2.5)
    np.testing.assert_allclose(radius, 2.5)


def test_unreachable_direction_is_ignored():
    m = 4
    # a third, unreachable direction with a large eigenvalue would dominate the normalization
    A = np.stack([blockdiag(rot(2 * np.pi * a / m), np.array([[3.0]])) for a in range(m)])
    Q = reachable_subspace(A, np.array([1.0, 0, 0]))
    assert Q.shape == (3, 2)
    res = analyze_spectra(A, np.array([1.0, 0, 0]), periods=periods_cyclic(m), cyclic_m=m)
    np.testing.assert_allclose(res.radius, 1.0)
    assert res.max_phase_error < 1e-12
    full = analyze_spectra(A, None, periods=periods_cyclic(m))
    np.testing.assert_allclose(full.radius, 3.0)
    assert full.max_phase_error < 1e-12  # 3 is a root of "unity" of phase 0


def test_commutators_zero_for_diagonal_class_and_not_for_s3():
    rng = np.random.default_rng(2)
    diag = np.stack([np.diag(rng.normal(size=6)) for _ in range(4)])
    assert commutator_norms(diag).max() == 0.0
    cplx = np.stack([blockdiag(*[r * rot(t) for r, t in zip(rng.uniform(0.5, 2, 3), rng.uniform(0, 6, 3), strict=True)])
                     for _ in range(5)])
    assert commutator_norms(cplx).max() < 1e-12
    # S3 permutation matrices: transpositions do not commute
    perms = [(0, 1, 2), (1, 0, 2), (0, 2, 1), (2, 1, 0), (1, 2, 0), (2, 0, 1)]
    S3 = np.stack([np.eye(3)[:, list(p)] for p in perms])
    C = commutator_norms(S3)
    assert C[1, 2] > 0.3
    assert C[0].max() < 1e-15  # the identity commutes with everything
    assert analyze_spectra(S3, np.array([1.0, 2, 3])).max_commutator == pytest.approx(C.max())


def test_decaying_direction_predicts_break_length():
    m, r = 5, 0.99
    A = np.stack([blockdiag(rot(2 * np.pi * a / m), r * rot(4 * np.pi * a / m)) for a in range(m)])
    res = analyze_spectra(A, np.array([1.0, 0, 1, 0]), periods=periods_cyclic(m), cyclic_m=m,
                          decay_tol=1e-2, train_length=10)
    expected = np.log(100) / -np.log(r)  # ~458 steps
    assert res.spectral_break_length == pytest.approx(expected, rel=0.02)
    np.testing.assert_allclose(res.subdominant_ratio[1:], r, rtol=1e-9)
    assert res.token_decay_length[1] == pytest.approx(expected, rel=1e-9)
    # the r-block is below the 500-step persistence threshold, so it has no phase error entry
    assert res.persistent[1].sum() == 2
    gam = lyapunov_exponents(normalize_transitions(A)[0], n_steps=500)
    assert gam[0] - gam[-1] == pytest.approx(-np.log(r), rel=1e-6)


def test_token_periods_and_fsm_construction_phases():
    from workbench.tasks.automata import Automaton

    # token 0: cycle (0 1) and cycle (2 3 4) -> period 6; token 1: constant map -> period 1
    tr = np.array([[1, 0], [0, 0], [3, 0], [4, 0], [2, 0]])
    auto = Automaton(tr, 0, np.array([0, 1, 0, 1, 2]))
    np.testing.assert_array_equal(token_periods(auto), [6, 1])
    A = np.zeros((2, 5, 5))
    for q in range(5):
        for v in range(2):
            A[v, tr[q, v], q] = 1.0
    res = analyze_spectra(A, np.eye(5)[0], periods=token_periods(auto))
    assert res.max_phase_error < 1e-9
    # planted: replace token 0's 2-cycle weights by a phase-shifted complex-like shear
    bad = A.copy()
    bad[0, :2, :2] = rot(np.pi / 2 + 0.1)  # eigenphases pi/2 +- 0.1 are not 6th roots of unity
    res_bad = analyze_spectra(bad, np.eye(5)[0], periods=token_periods(auto))
    assert res_bad.max_phase_error > 0.05


def test_rotation_block_angles():
    m = 5
    A = cyclic_rotations(m, freqs=(1, 2), scales=np.full(m, 0.9))
    res = analyze_spectra(A, np.array([1.0, 0, 1, 0]), rotation_blocks=True)
    units = res.rotation_angles * m / (2 * np.pi)
    np.testing.assert_allclose(np.round(units) - units, 0, atol=1e-9)
    assert np.round(units[1]).tolist() == [1, 2]
    np.testing.assert_allclose(res.rotation_moduli, 0.9)


def test_bad_input_and_baseline_errors():
    with pytest.raises(ValueError, match=r"\[V, H, H\]"):
        analyze_spectra(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="h0 is zero"):
        reachable_subspace(np.stack([np.eye(2)]), np.zeros(2))

    class Cfg:
        variant = "lstm"

    class Baseline:
        cfg = Cfg()

    with pytest.raises(ValueError, match="lstm"):
        model_transitions(Baseline())


# ----------------------------------------------------------------------------- real models


def test_cyclic_constructions_show_roots_of_unity():
    from analyses.spectral import spectra
    from workbench.constructions import construct
    from workbench.tasks import make_task

    task = make_task("cyclic:5")
    for variant in ("full", "rotation", "complex_diag", "block"):
        res = spectra(construct(task, variant), task)
        assert res.max_phase_error <= 1e-3 * 1e-3, variant  # float32 weights: ~1e-7
        assert 1 in res.frequencies
        assert res.max_commutator <= 1e-6
    rot_res = spectra(construct(task, "rotation"), task)
    assert rot_res.rotation_angles is not None
    units = rot_res.rotation_angles * 5 / (2 * np.pi)
    np.testing.assert_allclose(units, np.round(units), atol=1e-5)


def test_diagonal_class_models_have_zero_commutators():
    import torch

    from analyses.spectral import spectra
    from workbench.models import ModelConfig, build_model

    torch.manual_seed(0)
    for variant, extra in [("real_diag", {}), ("complex_diag", {}), ("rotation", {}),
                           ("positive_diag", {}), ("block", {"block_size": 1})]:
        m = build_model(ModelConfig(variant=variant, d_vocab=4, d_hidden=6, n_classes=4, **extra))
        assert spectra(m.eval()).max_commutator <= 1e-6, variant
    full = build_model(ModelConfig(variant="full", d_vocab=4, d_hidden=6, n_classes=4, init_noise=1.0))
    assert spectra(full.eval()).max_commutator > 1e-2


def test_nonabelian_construction_commutes_not():
    from analyses.spectral import summarize
    from workbench.constructions import construct
    from workbench.tasks import make_task

    task = make_task("group:S3")
    out = summarize(construct(task, "full"), task)
    assert out["max_commutator"] > 0.1
    assert out["max_phase_error"] < 1e-6


def test_planted_phase_drift_predicts_measured_break():
    import json

    import torch

    from analyses.spectral import break_prediction_check, summarize
    from workbench.constructions import construct
    from workbench.tasks import make_task

    task = make_task("cyclic:5")
    model = construct(task, "rotation")
    eps = np.pi / (5 * 50)  # every token over-rotates by eps: the readout breaks after 50 steps
    assert model.W_angle.shape == (5, 1) and model.W_angle[1, 0] > 0  # one block, +2 pi / 5
    with torch.no_grad():
        model.W_angle += eps  # every token (one-hot input) over-rotates by eps
    out = summarize(model, task)
    json.dumps(out)
    assert out["max_phase_error"] == pytest.approx(eps, rel=1e-3)
    assert out["phase_break_length"] == pytest.approx(50, rel=1e-3)
    check = break_prediction_check(model, task, lengths=(10, 20, 150, 200), n_sequences=64)
    assert check["accuracy"][10] == 1.0 and check["accuracy"][200] < 0.5
    assert check["consistent"]


def test_baselines_raise():
    from analyses.spectral import summarize
    from workbench.models import ModelConfig, build_model
    from workbench.tasks import make_task

    task = make_task("parity")
    gru = build_model(ModelConfig(variant="gru", d_vocab=2, d_hidden=4, n_classes=2))
    with pytest.raises(ValueError, match="gru"):
        summarize(gru, task)
