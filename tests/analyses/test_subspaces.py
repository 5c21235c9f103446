import numpy as np
import pytest

from analyses.groups.representations import recover_from_matrices
from analyses.subspaces import persistent_subspace_from_matrices
from workbench.tasks.groups import Group


def _planted(seed=0, k=3, decay=0.9, couple=0.5):
    """S3's 2-dim irrep ⊕ a k-dim block decaying at `decay`, which feeds the irrep and is hit by h0,
    all behind a random non-orthogonal basis and per-token scales."""
    G = Group.named("S3")
    names = G.irrep_names()
    rho = G.irreps()[names.index("2a")].real
    rng = np.random.default_rng(seed)
    V = G.order
    A = np.zeros((V, 2 + k, 2 + k))
    for v in range(V):
        O, _ = np.linalg.qr(rng.standard_normal((k, k)))
        A[v, :2, :2] = rho[v]
        A[v, :2, 2:] = couple * rng.standard_normal((2, k))   # transient leaks into the irrep
        A[v, 2:, 2:] = decay * O
    h0 = rng.standard_normal(2 + k)
    S = rng.standard_normal((2 + k, 2 + k)) + 2 * np.eye(2 + k)
    A = S @ A @ np.linalg.inv(S) * rng.uniform(0.5, 2.0, size=V)[:, None, None]
    return G, A, S @ h0, np.arange(V)


def test_planted_transient_recovered_exactly():
    G, A, h0, tok = _planted()
    ps = persistent_subspace_from_matrices(A, h0, burn_in=400, n_steps=20, n_sequences=16)
    assert ps.dimension == 2
    assert ps.reachable_dimension == 5 and ps.transient_dimension == 3
    assert ps.invariance_residual < 1e-9
    assert 0.5 < ps.transient_radius < 1.0 and np.isfinite(ps.transient_decay_length)
    res = recover_from_matrices(A, h0, G.table, tok, G.irreps(), G.irrep_names(), "S3",
                                subspace=ps.basis, subspace_singular_values=ps.singular_values)
    assert res.is_representation and res.faithful
    assert res.homomorphism_error < 1e-8 and res.residual < 1e-8
    assert res.decomposition_string() == "2a"
    # the short-word span includes the transient and is not a representation
    short = recover_from_matrices(A, h0, G.table, tok, G.irreps(), G.irrep_names(), "S3")
    assert short.dimension == 5 and not short.is_representation


def test_exact_construction_persistent_equals_reachable():
    G = Group.named("S3")
    rho = G.regular_representation().astype(float)
    h0 = np.zeros(6)
    h0[0] = 1.0
    ps = persistent_subspace_from_matrices(rho, h0, burn_in=50, n_steps=20, n_sequences=16)
    assert ps.dimension == ps.reachable_dimension == 6
    assert ps.transient_dimension == 0 and ps.invariance_residual < 1e-12


@pytest.mark.parametrize("bad", [dict(rtol=0.0), dict(rtol=1.5), dict(decay_tol=2.0), dict(n_steps=0)])
def test_bad_arguments_raise(bad):
    G, A, h0, _ = _planted()
    with pytest.raises(ValueError):
        persistent_subspace_from_matrices(A, h0, **bad)
