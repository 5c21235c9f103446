"""Automata: running against brute force, minimisation of known machines, isomorphism."""
import itertools

import numpy as np
import pytest
import torch

from workbench.tasks import Automaton


def brute_run(A, seq):
    q, out = A.start, []
    for a in seq:
        q = int(A.transitions[q][a])
        out.append(q)
    return out


def random_automaton(rng, n, k, n_out):
    return Automaton(rng.integers(0, n, size=(n, k)), int(rng.integers(n)), rng.integers(0, n_out, size=n))


def distinguishable_pairs(A):
    """Pure-Python check: pairs of states with different output sequences on some input."""
    n = A.n_states
    diff = {(p, q) for p in range(n) for q in range(n) if A.outputs[p] != A.outputs[q]}
    changed = True
    while changed:
        changed = False
        for p, q in itertools.product(range(n), repeat=2):
            if (p, q) not in diff and any((int(A.transitions[p][a]), int(A.transitions[q][a])) in diff for a in range(A.n_symbols)):
                diff.add((p, q))
                changed = True
    return diff


@pytest.mark.parametrize("seed", range(5))
def test_run_and_labels_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    A = random_automaton(rng, 7, 3, 4)
    tokens = rng.integers(0, 3, size=(6, 15))
    states = A.run(tokens)
    for b in range(6):
        assert states[b].tolist() == brute_run(A, tokens[b].tolist())
    assert np.array_equal(A.labels(tokens), A.outputs[states])
    t_states = A.run(torch.as_tensor(tokens))
    assert isinstance(t_states, torch.Tensor) and t_states.dtype == torch.int64
    assert np.array_equal(t_states.numpy(), states)
    assert A.run(tokens[0]).tolist() == states[0].tolist()  # 1-D input


def test_run_rejects_bad_tokens():
    A = Automaton(np.array([[0, 1], [1, 0]]), 0, np.array([0, 1]))
    with pytest.raises(ValueError, match="tokens must lie"):
        A.run(np.array([[0, 2]]))
    with pytest.raises(ValueError, match="shape"):
        A.run(np.zeros((2, 2, 2), dtype=int))


@pytest.mark.parametrize("kwargs,match", [
    (dict(transitions=np.array([[0, 2]]), start=0, outputs=np.array([0])), "transitions"),
    (dict(transitions=np.array([[0]]), start=1, outputs=np.array([0])), "start"),
    (dict(transitions=np.array([[0]]), start=0, outputs=np.array([0, 1])), "outputs"),
    (dict(transitions=np.array([[0.5]]), start=0, outputs=np.array([0])), "transitions"),
])
def test_bad_automata(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Automaton(**kwargs)


def test_minimize_known_machines():
    # count ones mod 6, output the count mod 2: minimal machine is parity (2 states)
    tr = np.array([[q, (q + 1) % 6] for q in range(6)])
    A = Automaton(tr, 0, np.arange(6) % 2)
    M = A.minimize()
    assert M.n_states == 2
    assert M.transitions.tolist() == [[0, 1], [1, 0]] and M.outputs.tolist() == [0, 1]
    # output mod 3 instead: 3 states
    assert Automaton(tr, 0, np.arange(6) % 3).minimize().n_states == 3
    # output constant: 1 state
    assert Automaton(tr, 0, np.zeros(6, dtype=int)).minimize().n_states == 1
    # unreachable states are dropped; already-minimal machines keep their size
    tr2 = np.array([[1, 0], [0, 1], [2, 2]])
    B = Automaton(tr2, 0, np.array([0, 1, 1]))
    assert B.minimize().n_states == 2


@pytest.mark.parametrize("seed", range(8))
def test_minimize_random_is_equivalent_and_minimal(seed):
    rng = np.random.default_rng(seed)
    A = random_automaton(rng, 9, 2, 2)
    M = A.minimize()
    tokens = rng.integers(0, 2, size=(50, 12))
    assert np.array_equal(A.labels(tokens), M.labels(tokens))
    assert not any(p != q for p, q in set(itertools.product(range(M.n_states), repeat=2)) - distinguishable_pairs(M))
    assert M.start == 0 and M.minimize().transitions.tolist() == M.transitions.tolist()
    # minimal size = number of distinguishable classes among reachable states of A
    reach = A.reachable().tolist()
    diff = distinguishable_pairs(A)
    classes = []
    for q in reach:
        if not any((q, c) not in diff for c in classes):
            classes.append(q)
    assert M.n_states == len(classes)


def test_isomorphism_positive_and_negative():
    rng = np.random.default_rng(3)
    A = random_automaton(rng, 8, 3, 3).minimize()
    perm = rng.permutation(A.n_states)  # relabel states: perm[q] is the new id of q
    inv = np.argsort(perm)
    B = Automaton(perm[A.transitions[inv]], int(perm[A.start]), A.outputs[inv])
    f = A.isomorphism(B)
    assert f is not None and all(f[q] == perm[q] for q in range(A.n_states))
    assert A.is_isomorphic(B) and B.is_isomorphic(A) and A.is_equivalent(B)
    # change one output: no isomorphism
    out = B.outputs.copy()
    out[0] = (out[0] + 1) % 3
    assert A.isomorphism(Automaton(B.transitions, B.start, out)) is None
    # change one transition (reachable): no isomorphism
    tr = B.transitions.copy()
    q = B.start
    tr[q, 0] = (tr[q, 0] + 1) % B.n_states
    assert not A.is_isomorphic(Automaton(tr, B.start, B.outputs))
    # different alphabets
    assert A.isomorphism(Automaton(np.zeros((1, 2), dtype=int), 0, np.zeros(1, dtype=int))) is None
    # equivalent but not isomorphic (redundant states)
    tr6 = np.array([[q, (q + 1) % 6] for q in range(6)])
    P6 = Automaton(tr6, 0, np.arange(6) % 2)
    P2 = Automaton(np.array([[0, 1], [1, 0]]), 0, np.array([0, 1]))
    assert not P6.is_isomorphic(P2) and P6.is_equivalent(P2)
