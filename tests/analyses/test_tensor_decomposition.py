"""Decompositions of planted tensors and exact constructions."""
import numpy as np
import pytest

from analyses.tensor_decomposition import (
    cp_decompose,
    cp_rank_curve,
    interaction_matrices,
    multilinear_ranks,
    transition_tensor,
    tucker_decompose,
    tucker_rank_curve,
)


def planted_cp(H=6, V=5, R=3, seed=0):
    rng = np.random.default_rng(seed)
    a, b, g = rng.normal(size=(H, R)), rng.normal(size=(H, R)), rng.normal(size=(V, R))
    return np.einsum("ir,jr,vr->ijv", a, b, g), (a, b, g)


def test_transition_tensor_layout_and_normalization():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 3, 3))
    W = transition_tensor(A, normalize=None)
    assert W.shape == (3, 3, 4)
    np.testing.assert_array_equal(W[:, :, 2], A[2])
    Wn = transition_tensor(A * np.arange(1, 5)[:, None, None])
    np.testing.assert_allclose(np.linalg.norm(Wn, axis=(0, 1)), 1.0)
    with pytest.raises(ValueError, match="normalize"):
        transition_tensor(A, normalize="max")


def test_cp_recovers_planted_rank_and_gates():
    W, (a, b, g) = planted_cp()
    curve = cp_rank_curve(W, max_rank=4)
    assert curve.rel_errors[1] > 1e-2  # rank 2 cannot fit a generic rank-3 tensor
    assert curve.rank_for(1e-6) == 3
    cp = cp_decompose(W, 3)
    # gates match the planted ones up to permutation and scale: |cosine| ~ 1
    cos = np.abs((cp.gates / np.linalg.norm(cp.gates, axis=0)).T @ (g / np.linalg.norm(g, axis=0)))
    np.testing.assert_allclose(np.sort(cos.max(1)), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.abs(cp.gates).max(0), 1.0)
    assert np.all(np.diff(cp.weights) <= 0)


def test_tucker_exact_at_multilinear_rank():
    rng = np.random.default_rng(1)
    core = rng.normal(size=(2, 3, 2))
    U, Vm, G = (np.linalg.qr(rng.normal(size=(n, r)))[0] for n, r in ((6, 2), (6, 3), (5, 2)))
    W = np.einsum("abc,ia,jb,vc->ijv", core, U, Vm, G)
    ranks, _ = multilinear_ranks(W)
    assert ranks == (2, 3, 2)
    assert tucker_decompose(W, (2, 3, 2)).rel_error < 1e-10
    assert tucker_decompose(W, (2, 2, 2)).rel_error > 1e-3
    curve = tucker_rank_curve(W, max_rank=3)
    assert curve.rel_errors[-1] < 1e-10 and curve.rel_errors[0] > 1e-2


def test_rotation_solution_of_cyclic_group_has_small_cp_rank():
    m = 5
    A = np.stack([[[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]] for t in 2 * np.pi * np.arange(m) / m])
    W = transition_tensor(A)
    # slices span {I, J}: the 2x2x2 pencil (I, J) has real CP rank 3, never 2
    assert multilinear_ranks(W)[0] == (2, 2, 2)
    assert cp_decompose(W, 2, n_restarts=4).rel_error > 1e-2
    assert cp_decompose(W, 3, n_restarts=4, n_iter_max=2000).rel_error < 1e-3


def test_interaction_matrices_of_fsm_construction():
    rng = np.random.default_rng(3)
    n, k, C = 6, 3, 2
    delta = rng.integers(0, n, size=(n, k))
    out = rng.integers(0, C, size=n)
    A = np.zeros((k, n, n))
    for q in range(n):
        for v in range(k):
            A[v, delta[q, v], q] = 1.0
    W = transition_tensor(A, normalize=None)
    W_U = np.eye(C)[out]  # [H, C]: state q votes for its output
    res = interaction_matrices(W, W_U, n_top=3)
    expected = (out[delta][None] == np.arange(C)[:, None, None]).astype(float)  # [C, n, k]
    np.testing.assert_array_equal(res.M, expected)
    for c in range(C):
        s = np.linalg.svd(res.M[c], compute_uv=False)
        # eigenvalues of Q_c are +- s/2 (and zeros): strengths = singular values
        np.testing.assert_allclose(res.strengths[c], s[:3], atol=1e-10)
        np.testing.assert_allclose(np.sort(np.abs(res.eigenvalues[c]))[::-1][:6:2], s[:3] / 2, atol=1e-10)
        # the top pair reproduces the bilinear form: u^T M v = s
        u, v = res.state_directions[c, 0], res.token_weights[c, 0]
        assert u @ res.M[c] @ v == pytest.approx(s[0], rel=1e-9)
        assert res.effective_rank[c] == np.linalg.matrix_rank(res.M[c])


def test_bad_inputs():
    with pytest.raises(ValueError, match="rank"):
        cp_decompose(np.ones((2, 2, 2)), 0)
    with pytest.raises(ValueError, match=r"\[H, H, V\]"):
        cp_decompose(np.ones((2, 3, 2)), 1)
    with pytest.raises(ValueError, match="W_U"):
        interaction_matrices(np.ones((2, 2, 2)), np.ones((3, 2)))


def test_decompose_constructed_fsm_model():
    from analyses.tensor_decomposition import decompose_model
    from workbench.constructions import construct
    from workbench.tasks import make_task

    task = make_task("fsm:5:2")
    rep = decompose_model(construct(task, "full"), max_rank=3)
    assert rep.cp_curve.rel_errors.shape == (3,)
    assert np.all(np.diff(rep.tucker_curve.rel_errors) <= 1e-9)  # more rank never hurts Tucker
    assert rep.multilinear_ranks[2] <= 2
    assert rep.interactions.M.shape == (task.n_classes, 5, 2)


def test_plots_render():
    import matplotlib

    matplotlib.use("Agg")
    from analyses.plot.spectra import (
        plot_commutators,
        plot_interaction_spectrum,
        plot_norm_dynamics,
        plot_rank_curves,
        plot_rotation_angles,
        plot_token_gates,
        plot_unit_circle,
    )
    from analyses.spectral import analyze_spectra

    m = 5
    A = np.stack([[[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]] for t in 2 * np.pi * np.arange(m) / m])
    res = analyze_spectra(A, np.array([1.0, 0]), periods=np.array([1, 5, 5, 5, 5]), cyclic_m=m,
                          rotation_blocks=True)
    W = transition_tensor(A)
    figs = [plot_unit_circle(res), plot_commutators(res), plot_norm_dynamics(res),
            plot_rotation_angles(res, m=m), plot_rank_curves(cp_rank_curve(W, 2)),
            plot_token_gates(cp_decompose(W, 2)),
            plot_interaction_spectrum(interaction_matrices(W, np.eye(2)))]
    assert all(f.axes for f in figs)
