"""Representation recovery on planted answers: known representations hidden behind a random
non-orthogonal change of basis, unreached junk directions, per-token positive scales and noise."""

import numpy as np
import pytest

from analyses.groups.representations import (
    block_diagonalize,
    cayley_bfs,
    character_multiplicities,
    conjugacy_classes_from_table,
    frobenius_schur_indicators,
    normalize_scales,
    realify,
    recover_from_matrices,
)
from workbench.tasks.groups import Group


def direct_sum(*reps):
    """Block-diagonal direct sum of representations [order, d_i, d_i] -> [order, Σd, Σd]."""
    order = reps[0].shape[0]
    n = sum(r.shape[1] for r in reps)
    out = np.zeros((order, n, n), dtype=np.result_type(*reps))
    i = 0
    for r in reps:
        d = r.shape[1]
        out[:, i:i + d, i:i + d] = r
        i += d
    return out


def hide(rho, hidden, rng, noise=1e-7, scales=(0.3, 3.0), h0=None):
    """Token matrices [order, H, H] whose restriction to a hidden r-dim invariant subspace is a
    scaled copy of `rho` (token v = element v), in a random non-orthogonal basis P, with junk on
    the H - r unreached directions (including junk mapping them into the subspace) and noise.

    Returns (A, h0, P): h0 = P [u; 0] with u random unless given.
    """
    order, r, _ = rho.shape
    P = rng.normal(size=(hidden, hidden)) + 2 * np.eye(hidden)
    Pinv = np.linalg.inv(P)
    A = np.empty((order, hidden, hidden))
    for v in range(order):
        M = np.zeros((hidden, hidden))
        M[:r, :r] = rho[v]
        M[:r, r:] = rng.normal(size=(r, hidden - r))
        M[r:, r:] = rng.normal(size=(hidden - r, hidden - r))
        c = rng.uniform(*scales) if scales else 1.0
        A[v] = c * (P @ M @ Pinv) + noise * rng.normal(size=(hidden, hidden))
    u = rng.normal(size=r) if h0 is None else h0
    return A, P @ np.concatenate([u, np.zeros(hidden - r)]), P


def recover(group, A, h0, tokens=None, **kw):
    tokens = np.arange(group.order) if tokens is None else np.asarray(tokens)
    return recover_from_matrices(A, h0, group.table, tokens, group.irreps(), group.irrep_names(),
                                 group_name=group.name, **kw)


@pytest.fixture(scope="module")
def S4():
    return Group.named("S4")


def test_planted_s4_recovered_exactly(S4):
    rng = np.random.default_rng(0)
    names = S4.irrep_names()
    irr = dict(zip(names, S4.irreps(), strict=True))
    rho = direct_sum(irr["3a"], irr["2a"], irr["trivial"])
    A, h0, _ = hide(rho, 9, rng, noise=1e-7)
    res = recover(S4, A, h0)
    assert res.dimension == 6
    want = np.zeros(len(names), dtype=int)
    want[[names.index("3a"), names.index("2a"), names.index("trivial")]] = 1
    assert np.array_equal(res.multiplicities, want)
    assert res.is_representation and res.faithful
    # residuals at the noise level (amplified by the basis condition), far below atol
    assert res.homomorphism_error < 1e-4 and res.residual < 1e-4
    # the scales removed are the planted ones: rho has |det| = 1, so c = |det(c rho)|^(1/r)
    # and every recovered element matrix has the planted character
    assert np.allclose(res.characters, np.trace(rho, axis1=1, axis2=2), atol=1e-4)
    # the change of basis block-diagonalises: T⁻¹ rho T is the irreps, block by block
    for b in res.blocks:
        pi = S4.irreps()[b.irrep]
        assert np.allclose(res.block_form[:, b.start:b.stop, b.start:b.stop], pi, atol=1e-4)
    # agreement with the Group toolkit's own decomposition
    dec = S4.decompose(res.element_matrices, atol=1e-4)
    assert np.array_equal(dec.multiplicities, res.multiplicities)
    assert "3a" in res.sentence() and "faithful" in res.sentence()


def test_generator_tokens_and_noise_scaling(S4):
    """/gens tasks: only the generators are tokens; errors scale with the planted noise."""
    names = S4.irrep_names()
    irr = dict(zip(names, S4.irreps(), strict=True))
    rho = direct_sum(irr["3b"], irr["sign"])
    errs = []
    for noise in (1e-8, 1e-5):
        rng = np.random.default_rng(1)
        A, h0, _ = hide(rho[S4.generators], 6, rng, noise=noise)
        res = recover(S4, A, h0, tokens=S4.generators)
        assert res.is_representation and res.faithful
        assert res.multiplicities[names.index("3b")] == 1 and res.multiplicities[names.index("sign")] == 1
        errs.append(res.homomorphism_error)
    assert errs[1] > 100 * errs[0]   # the error is the noise, not a floor of the method
    assert errs[1] < 1e-2


def test_inequivalent_same_dimension_told_apart(S4):
    """S4's two 3-dim irreps (3b = 3a ⊗ sign) have the same dimension and spectra sets overlap;
    the characters separate them."""
    names = S4.irreps(), S4.irrep_names()
    irreps, names = names
    rng = np.random.default_rng(2)
    found = []
    for name in ("3a", "3b"):
        A, h0, _ = hide(irreps[names.index(name)], 5, rng, noise=1e-9)
        res = recover(S4, A, h0)
        assert res.decomposition_string() == name
        found.append(res.characters)
    assert np.max(np.abs(found[0] - found[1])) > 1.0


def test_random_matrices_are_not_a_representation(S4):
    rng = np.random.default_rng(3)
    A = rng.normal(size=(S4.order, 6, 6))
    res = recover(S4, A, rng.normal(size=6))
    assert not res.is_representation and not res.faithful
    assert res.homomorphism_error > 0.1
    s = res.sentence()
    assert s.startswith("not a representation") and "homomorphism error" in s
    assert not res.is_approximate()
    d = res.summary()
    assert d["is_representation"] is False and d["homomorphism_error"] > 0.1


def test_nearly_a_representation_fails_at_tolerance(S4):
    """A representation with a 1e-2 perturbation of one token: errors of that size, rejected at
    atol 1e-3, accepted at atol 1e-1 (the decision follows the tolerance, the numbers do not)."""
    rng = np.random.default_rng(4)
    irr = dict(zip(S4.irrep_names(), S4.irreps(), strict=True))
    rho = irr["3a"].copy()
    rho[5] = rho[5] + 1e-2 * rng.normal(size=(3, 3))
    A, h0, _ = hide(rho, 3, rng, noise=0)
    strict = recover(S4, A, h0, atol=1e-3)
    loose = recover(S4, A, h0, atol=1e-1)
    assert not strict.is_representation and loose.is_representation
    assert 1e-3 < strict.homomorphism_error < 1e-1
    # Between the two tolerances the result says "approximately", with the irreps it found.
    assert strict.is_approximate(approx_atol=0.1) and not strict.is_approximate(approx_atol=1e-3)
    assert strict.sentence().startswith("approximately 3a of S4")
    assert strict.summary()["approximate"] is True
    assert not loose.is_approximate()   # exact at its own tolerance: not "approximate"


def test_unfaithful_kernel(S4):
    """2a ⊕ trivial factors through S4 → S3: its kernel is the Klein four-group."""
    rng = np.random.default_rng(5)
    irr = dict(zip(S4.irrep_names(), S4.irreps(), strict=True))
    A, h0, _ = hide(direct_sum(irr["2a"], irr["trivial"]), 4, rng, noise=1e-9)
    res = recover(S4, A, h0)
    assert res.is_representation and not res.faithful
    assert len(res.kernel) == 4 and 0 in res.kernel
    assert "not faithful: kernel of 4 elements" in res.sentence()


def test_complex_irreps_real_form_cyclic():
    """Z5's rotation by 2π/5 is realify(1a) = 1a ⊕ conj(1a); the real basis gives one 2×2 block."""
    Z5 = Group.named("Z5")
    irreps = Z5.irreps()
    names = Z5.irrep_names()
    rho = realify(irreps[1])
    rng = np.random.default_rng(6)
    A, h0, _ = hide(rho, 4, rng, noise=1e-9)
    res = recover(Z5, A, h0)
    assert res.is_representation and res.faithful and res.dimension == 2
    conj = [i for i in range(5) if np.allclose(Z5.character_table()[i], Z5.character_table()[1].conj())][0]
    assert res.multiplicities[1] == 1 and res.multiplicities[conj] == 1 and res.multiplicities.sum() == 2
    assert np.isrealobj(res.change_of_basis) and len(res.blocks) == 1 and res.blocks[0].dim == 2
    assert res.block_residual < 1e-6
    assert names[1] in res.decomposition_string()


def test_quaternionic_irrep_stays_complex():
    """Q8's 2-dim irrep has FS = -1: real only as a 4-dim block; recovered as 2 complex copies."""
    Q8 = Group.named("Q8")
    fs = Q8.frobenius_schur()
    i2 = int(np.nonzero(fs == -1)[0][0])
    rho = realify(Q8.irreps()[i2])
    rng = np.random.default_rng(7)
    A, h0, _ = hide(rho, 6, rng, noise=1e-9)
    res = recover(Q8, A, h0)
    assert res.multiplicities[i2] == 2 and res.multiplicities.sum() == 2
    assert res.is_representation and res.faithful
    assert np.iscomplexobj(res.change_of_basis) and res.block_residual < 1e-6


def test_a5_generators_and_bfs():
    A5 = Group.named("A5")
    parent, parent_token, order = cayley_bfs(A5.table, A5.generators)
    assert len(order) == 60 and order[0] == 0
    # parents precede children and the words reproduce the elements
    pos = {g: i for i, g in enumerate(order)}
    for g in order[1:]:
        assert pos[parent[g]] < pos[g]
        assert A5.table[A5.generators[parent_token[g]], parent[g]] == g
    rng = np.random.default_rng(8)
    irr = dict(zip(A5.irrep_names(), A5.irreps(), strict=True))
    rho = direct_sum(irr["5a"], irr["3a"])
    A, h0, _ = hide(rho[A5.generators], 10, rng, noise=1e-9)
    res = recover(A5, A, h0, tokens=A5.generators)
    assert res.decomposition_string() == "5a ⊕ 3a" and res.faithful
    assert len(res.classes) == 5 and res.classes[0] == [0]


def test_helpers_and_errors(S4):
    raw, mult, residual = character_multiplicities(np.trace(S4.regular_representation(), axis1=1, axis2=2),
                                                   S4.irreps())
    assert np.array_equal(mult, S4.irrep_dims()) and residual < 1e-9
    assert np.array_equal(frobenius_schur_indicators(S4.irreps(), S4.table), S4.frobenius_schur())
    assert sorted(map(sorted, conjugacy_classes_from_table(S4.table))) == sorted(map(sorted, S4.conjugacy_classes()))
    M, c, sing = normalize_scales(np.stack([3 * np.eye(2), np.zeros((2, 2)), np.diag([2.0, 0.5])]))
    assert np.allclose(c, [3, 1, 1]) and sing.tolist() == [False, True, False]
    with pytest.raises(ValueError, match="multiplicities"):
        block_diagonalize(S4.irreps()[3], S4.irreps(), np.array([1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="generate only"):
        cayley_bfs(S4.table, [0])
    with pytest.raises(ValueError, match="token_matrices"):
        recover(S4, np.zeros((24, 3)), np.ones(3))
    with pytest.raises(ValueError, match="h0"):
        recover(S4, np.zeros((24, 3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="token_elements"):
        recover(S4, np.zeros((24, 3, 3)), np.ones(3), tokens=[1, 2])


def test_plots_draw(S4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analyses.plot.representations import plot_change_of_basis, plot_characters, plot_multiplicities

    rng = np.random.default_rng(9)
    irr = dict(zip(S4.irrep_names(), S4.irreps(), strict=True))
    A, h0, _ = hide(direct_sum(irr["3a"], irr["trivial"]), 5, rng, noise=1e-9)
    res = recover(S4, A, h0)
    for fig in (plot_characters(res), plot_multiplicities(res), plot_change_of_basis(res, tokens=[1, 2])):
        assert fig.axes
        plt.close(fig)
    bad = recover(S4, rng.normal(size=(24, 4, 4)), rng.normal(size=4))
    plt.close(plot_change_of_basis(bad))
