"""Finite groups: structure, character tables (known tables written out), irreps, decompose."""
import itertools
import math
from collections import Counter

import numpy as np
import pytest

from workbench.tasks.groups import MAX_ORDER, Group, cycle_string, parse_cycles

PHI = (1 + 5**0.5) / 2
W = np.exp(2j * np.pi / 3)


# ---------------------------------------------------------------- reference class sizes


def _partitions(n, largest=None):
    largest = n if largest is None else largest
    if n == 0:
        yield ()
        return
    for k in range(min(n, largest), 0, -1):
        for rest in _partitions(n - k, k):
            yield (k,) + rest


def _sym_class_size(n, lam):
    z = 1
    for part, mult in Counter(lam).items():
        z *= part**mult * math.factorial(mult)
    return math.factorial(n) // z


def ref_sizes(name):
    """Class sizes from textbook formulas (independent of the group code)."""
    if "x" in name:
        out = [1]
        for f in name.split("x"):
            out = [a * b for a in out for b in ref_sizes(f)]
        return sorted(out)
    fam, n = name[0], int(name[1:]) if name != "Q8" else 8
    if name == "Q8":
        return [1, 1, 2, 2, 2]
    if fam == "Z":
        return [1] * n
    if fam == "S":
        return sorted(_sym_class_size(n, lam) for lam in _partitions(n))
    if fam == "A":
        if n < 3:
            return [1]
        out = []
        for lam in _partitions(n):
            if (n - len(lam)) % 2:  # odd permutation
                continue
            size = _sym_class_size(n, lam)
            if all(p % 2 for p in lam) and len(set(lam)) == len(lam):
                out += [size // 2, size // 2]  # splits in A_n
            else:
                out.append(size)
        return sorted(out)
    if fam == "D":
        if n == 1:
            return [1, 1]
        if n == 2:
            return [1, 1, 1, 1]
        if n % 2:
            return sorted([1] + [2] * ((n - 1) // 2) + [n])
        return sorted([1, 1] + [2] * ((n - 2) // 2) + [n // 2, n // 2])
    raise AssertionError(name)


FAMILIES = (
    [f"S{n}" for n in range(1, 7)]
    + [f"A{n}" for n in range(3, 7)]
    + [f"D{n}" for n in range(1, 13)]
    + [f"Z{n}" for n in range(1, 13)]
    + ["Q8", "Z2xZ4", "S3xZ2", "Z2xZ2xZ2", "A4xZ3", "S3xS3", "Q8xZ3", "D4xZ2"]
)
SMALL = [f for f in FAMILIES if Group.named(f).order <= 120]


def check_irreps(G, pairs="generators", atol=1e-8):
    """Homomorphism, unitarity, characters = table rows, realness for FS = +1."""
    X = G.character_table()
    class_of = G.class_of
    for rho, chi, fs in zip(G.irreps(), X, G.frobenius_schur(), strict=True):
        N, d, _ = rho.shape
        assert N == G.order
        eye = np.eye(d)
        assert np.abs(rho @ np.conj(np.swapaxes(rho, 1, 2)) - eye).max() < atol
        if pairs == "all":
            lhs = rho[G.table]  # [N, N, d, d]
            rhs = rho[:, None] @ rho[None, :]
            assert np.abs(lhs - rhs).max() < atol
        else:
            assert np.abs(rho[0] - eye).max() < atol
            for g in G.generators:
                assert np.abs(rho[G.table[g]] - rho[g] @ rho).max() < atol
        assert np.abs(np.einsum("gii->g", rho) - chi[class_of]).max() < 1e-8
        if fs == 1:
            assert rho.dtype == np.float64
        else:
            assert np.iscomplexobj(rho)


@pytest.mark.parametrize("name", FAMILIES)
def test_structure_and_orthogonality(name):
    G = Group.named(name)
    sizes = G.class_sizes
    assert sorted(sizes.tolist()) == ref_sizes(name)
    assert G.elements[0] == tuple(range(G.degree)) and G.identity == 0
    # classes partition the group and are closed under conjugation
    assert sorted(sum(G.conjugacy_classes(), [])) == list(range(G.order))
    X = G.character_table()
    k = len(sizes)
    assert X.shape == (k, k)
    dims = G.irrep_dims()
    assert int((dims**2).sum()) == G.order
    assert np.allclose(X[:, 0], dims)
    # row orthogonality: Σ_C |C| chi_i(C) conj chi_j(C) = |G| δ_ij
    assert np.abs((X * sizes) @ X.conj().T / G.order - np.eye(k)).max() < 1e-9
    # column orthogonality: Σ_i chi_i(C) conj chi_i(C') = |G|/|C| δ
    assert np.abs(X.conj().T @ X - np.diag(G.order / sizes)).max() < 1e-8
    assert X[0].real.min() == 1 and np.all(X[0] == 1)  # trivial first
    fs = G.frobenius_schur()
    assert set(fs.tolist()) <= {-1, 0, 1}
    assert np.all((fs == 0) == (np.abs(X.imag).max(axis=1) > 1e-9))  # complex type iff non-real
    names = G.irrep_names()
    assert len(set(names)) == k and names[0] == "trivial"


@pytest.mark.parametrize("name", FAMILIES)
def test_irreps(name):
    G = Group.named(name)
    check_irreps(G, pairs="all" if G.order <= 60 else "generators")
    # pairwise inequivalent: character inner products of the irreps themselves
    chis = np.stack([np.einsum("gii->g", r) for r in G.irreps()])
    gram = chis @ chis.conj().T / G.order
    assert np.abs(gram - np.eye(len(chis))).max() < 1e-8


def test_table_convention_and_inverse():
    G = Group.named("S4")
    P = G.perms
    for a, b in itertools.product(range(0, 24, 5), range(24)):
        assert G.elements[G.table[a, b]] == tuple(P[a][P[b]])  # (a·b)(i) = a[b[i]]
    assert np.all(G.table[np.arange(24), G.inverse] == 0)
    perm_rep = G.permutation_representation()
    assert np.allclose(perm_rep[G.table], perm_rep[:, None] @ perm_rep[None, :])
    for g in range(24):
        assert np.array_equal(np.linalg.matrix_power(perm_rep[g], int(G.element_orders[g])), np.eye(4))
    assert sorted(Counter(G.element_orders.tolist()).items()) == [(1, 1), (2, 9), (3, 8), (4, 6)]


# ---------------------------------------------------------------- known tables


def _same_table(X, expected, sizes, expected_sizes):
    expected = np.asarray(expected, dtype=complex)
    k = len(sizes)
    for perm in itertools.permutations(range(k)):
        if list(np.asarray(sizes)[list(perm)]) != list(expected_sizes):
            continue
        Y = X[:, list(perm)]
        rows = sorted(tuple(np.round(np.r_[r.real, r.imag], 6)) for r in Y)
        erows = sorted(tuple(np.round(np.r_[r.real, r.imag], 6)) for r in expected)
        if rows == erows:
            return True
    return False


KNOWN = {
    "S3": ([1, 3, 2], [[1, 1, 1], [1, -1, 1], [2, 0, -1]]),
    "S4": ([1, 6, 3, 8, 6], [[1, 1, 1, 1, 1], [1, -1, 1, 1, -1], [2, 0, 2, -1, 0], [3, 1, -1, 0, -1], [3, -1, -1, 0, 1]]),
    "A4": ([1, 3, 4, 4], [[1, 1, 1, 1], [1, 1, W, W**2], [1, 1, W**2, W], [3, -1, 0, 0]]),
    "A5": ([1, 15, 20, 12, 12], [[1, 1, 1, 1, 1], [3, -1, 0, PHI, 1 - PHI], [3, -1, 0, 1 - PHI, PHI],
                                [4, 0, 1, -1, -1], [5, 1, -1, 0, 0]]),
    "D4": ([1, 1, 2, 2, 2], [[1, 1, 1, 1, 1], [1, 1, 1, -1, -1], [1, 1, -1, 1, -1], [1, 1, -1, -1, 1], [2, -2, 0, 0, 0]]),
    "Q8": ([1, 1, 2, 2, 2], [[1, 1, 1, 1, 1], [1, 1, 1, -1, -1], [1, 1, -1, 1, -1], [1, 1, -1, -1, 1], [2, -2, 0, 0, 0]]),
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_character_tables(name):
    G = Group.named(name)
    sizes, table = KNOWN[name]
    assert _same_table(G.character_table(), table, G.class_sizes, sizes)


def test_known_table_detects_a_wrong_table():
    G = Group.named("S4")
    sizes, table = KNOWN["S4"]
    wrong = [row[:] for row in table]
    wrong[3][1] = -1  # swap a sign in the standard representation
    assert not _same_table(G.character_table(), wrong, G.class_sizes, sizes)


def test_frobenius_schur_q8_vs_d4_and_names():
    assert Group.named("Q8").frobenius_schur().tolist() == [1, 1, 1, 1, -1]
    assert Group.named("D4").frobenius_schur().tolist() == [1, 1, 1, 1, 1]
    assert Group.named("Z3").frobenius_schur().tolist() == [1, 0, 0]
    assert Group.named("S3").irrep_names() == ["trivial", "sign", "2a"]
    assert Group.named("S4").irrep_names() == ["trivial", "sign", "2a", "3a", "3b"]
    assert Group.named("A4").irrep_names() == ["trivial", "1a", "1b", "3a"]
    # deterministic across fresh constructions (not only the cache)
    fresh = Group.from_permutations(parse_cycles("(0 1 2 3 4),(0 1 2)"))
    assert fresh.order == 60 and fresh.irrep_dims().tolist() == [1, 3, 3, 4, 5]


# ---------------------------------------------------------------- decompose / regular rep


def test_decompose_regular_and_permutation():
    G = Group.named("S4")
    dec = G.decompose(G.regular_representation())
    assert dec.multiplicities.tolist() == G.irrep_dims().tolist()
    assert dec.is_representation and dec.residual < 1e-9 and dec.homomorphism_error == 0
    perm = G.decompose(G.permutation_representation())
    names = {s["name"]: s["multiplicity"] for s in perm.summary()}
    assert names["trivial"] == 1 and sum(names.values()) == 2  # 4 = 1 + 3
    # direct sum of two irreps under a random orthogonal change of basis
    r = G.irreps()
    rep = np.zeros((24, 5, 5))
    rep[:, :2, :2], rep[:, 2:, :2] = r[2], 0
    rep[:, 2:, 2:] = r[3]
    Q = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0]
    dec = G.decompose(Q @ rep @ Q.T)
    assert dec.multiplicities.tolist() == [0, 0, 1, 1, 0] and dec.is_representation


def test_decompose_flags_non_representations():
    G = Group.named("S3")
    rep = G.irreps()[2] * 1.1  # scaled: not a homomorphism, non-integral multiplicities
    dec = G.decompose(rep, atol=1e-6)
    assert not dec.is_representation and dec.residual > 0.09 and dec.homomorphism_error > 0.1
    noisy = G.irreps()[2] + 1e-4 * np.random.default_rng(1).normal(size=(6, 2, 2))
    assert not G.decompose(noisy, atol=1e-6).is_representation
    assert G.decompose(noisy, atol=1e-2).is_representation
    with pytest.raises(ValueError, match="expected"):
        G.decompose(np.zeros((5, 2, 2)))


def test_caching_returns_equal_copies():
    G = Group.named("S4")
    a, b = G.irreps(), G.irreps()
    assert a[3] is not b[3] and np.array_equal(a[3], b[3])
    a[3][:] = 0
    assert not np.array_equal(a[3], G.irreps()[3])
    assert Group.named("S4") is G


def test_large_orders_within_limit():
    G = Group.named("A5xZ2xZ2xZ2xZ2")  # order 960, 80 classes (S5xZ16, order 1920: benchmarks/)
    assert G.order == 960 and len(G.conjugacy_classes()) == 5 * 16
    check_irreps(G)
    Z = Group.named("Z2000")
    X = Z.character_table()
    assert np.abs((X * Z.class_sizes) @ X.conj().T / Z.order - np.eye(2000)).max() < 1e-9


# ---------------------------------------------------------------- construction and parsing


def test_cycle_notation():
    assert parse_cycles("(0 1 2)(3 4),(0 1)") == [(1, 2, 0, 4, 3), (1, 0, 2, 3, 4)]
    assert parse_cycles("(0,1,2)") == [(1, 2, 0)]  # GAP-style commas inside a cycle
    # overlapping cycles compose right to left: (0 1)(1 2) maps 1 -> 2 -> 2? apply (1 2) first
    p = parse_cycles("(0 1)(1 2)")[0]
    assert p == (1, 2, 0)
    assert parse_cycles("()") == [(0,)]
    assert cycle_string((1, 2, 0, 4, 3)) == "(0 1 2)(3 4)" and cycle_string((0, 1)) == "()"
    G = Group.named("perm:(0 1 2)(3 4),(0 1)")
    assert G.order == 12 and G.degree == 5


@pytest.mark.parametrize("bad", ["(0 1", "(0 1)x", "(0 -1)", "(0 0)", "", "(a b)", "(0 1),"])
def test_bad_cycles(bad):
    with pytest.raises(ValueError):
        parse_cycles(bad)


@pytest.mark.parametrize("gens,match", [
    ([(0, 0, 1)], "not a permutation"),
    ([(1, 2)], "not a permutation"),
    ([(1, 0), (0, 1, 2)], "same length"),
    ([], "no generators"),
    ([("a", "b")], "integers"),
])
def test_bad_generators(gens, match):
    with pytest.raises(ValueError, match=match):
        Group.from_permutations(gens)


@pytest.mark.parametrize("name", ["S7", "A8", "Z2001", "D1001", "S5xS4", "Foo", "S0", "Sx", "S3x", "Q9", "perm:(0 1 2 3 4 5 6)(7 8),(0 1)"])
def test_bad_names(name):
    with pytest.raises(ValueError) as info:
        Group.named(name)
    assert "accepted" in str(info.value) or str(MAX_ORDER) in str(info.value)


def test_order_limit_in_closure():
    gens = [tuple([1, 0] + list(range(2, 7))), tuple(list(range(1, 7)) + [0])]  # S7
    with pytest.raises(ValueError, match="order > 2000"):
        Group.from_permutations(gens)
