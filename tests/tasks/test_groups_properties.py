"""Hypothesis property tests on random permutation groups, with sympy as an oracle."""
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sympy.combinatorics import Permutation, PermutationGroup

from workbench.tasks.groups import Group


@st.composite
def perm_groups(draw):
    n = draw(st.integers(1, 5))  # order <= 120 keeps the all-pairs check cheap
    k = draw(st.integers(1, 3))
    gens = [tuple(draw(st.permutations(list(range(n))))) for _ in range(k)]
    return gens


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(perm_groups())
def test_random_permutation_groups(gens):
    G = Group.from_permutations(gens)
    S = PermutationGroup([Permutation(list(g)) for g in gens])
    assert G.order == S.order()
    # closure: every element is a product of generators; table entries are the compositions
    P = G.perms
    rng = np.random.default_rng(0)
    for a, b in rng.integers(0, G.order, size=(20, 2)):
        assert G.elements[G.table[a, b]] == tuple(P[a][P[b]])
    # class sizes against sympy
    sizes = sorted(len(c) for c in S.conjugacy_classes())
    assert sorted(G.class_sizes.tolist()) == sizes
    X = G.character_table()
    k = len(sizes)
    assert np.abs((X * G.class_sizes) @ X.conj().T / G.order - np.eye(k)).max() < 1e-9
    assert int((G.irrep_dims() ** 2).sum()) == G.order
    # number of 1-dim irreps = |G / [G, G]|
    assert int((G.irrep_dims() == 1).sum()) == G.order // S.derived_subgroup().order()
    irreps = G.irreps()
    for rho, chi in zip(irreps, X, strict=True):
        d = rho.shape[1]
        assert np.abs(rho[G.table] - rho[:, None] @ rho[None, :]).max() < 1e-8
        assert np.abs(rho @ np.conj(np.swapaxes(rho, 1, 2)) - np.eye(d)).max() < 1e-8
        assert np.abs(np.einsum("gii->g", rho) - chi[G.class_of]).max() < 1e-8
    # the permutation representation decomposes with non-negative integer multiplicities
    dec = G.decompose(G.permutation_representation())
    assert dec.is_representation and dec.multiplicities.min() >= 0
    assert int((dec.multiplicities * G.irrep_dims()).sum()) == G.degree
    # number of orbits = multiplicity of the trivial irrep (Burnside's lemma)
    assert dec.multiplicities[0] == len(S.orbits())
    # element orders against sympy
    assert Counter(G.element_orders.tolist()) == Counter(Permutation(list(e)).order() for e in G.elements)
