"""Property tests for automaton minimisation and isomorphism on random Moore machines.

The oracle is independent of `Automaton.minimize`: two states are equivalent when no pair of
states reachable from them in the product machine has different outputs (a breadth-first search).
"""
from collections import deque

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.tasks.automata import Automaton

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)


@st.composite
def automata(draw, max_states: int = 8):
    n = draw(st.integers(1, max_states))
    k = draw(st.integers(1, 3))
    n_out = draw(st.integers(1, 3))
    tr = draw(st.lists(st.lists(st.integers(0, n - 1), min_size=k, max_size=k), min_size=n, max_size=n))
    out = draw(st.lists(st.integers(0, n_out - 1), min_size=n, max_size=n))
    return Automaton(np.array(tr), draw(st.integers(0, n - 1)), np.array(out))


def equivalent_states(a: Automaton, p: int, b: Automaton, q: int) -> bool:
    """Oracle: same output sequence on every input from state p of a and state q of b."""
    seen = {(p, q)}
    queue = deque(seen)
    while queue:
        x, y = queue.popleft()
        if a.outputs[x] != b.outputs[y]:
            return False
        for s in range(a.n_symbols):
            nxt = (int(a.transitions[x, s]), int(b.transitions[y, s]))
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return True


def relabelled(a: Automaton, perm: np.ndarray) -> Automaton:
    """The same machine with state q renamed perm[q]."""
    inv = np.argsort(perm)
    return Automaton(perm[a.transitions[inv]], int(perm[a.start]), a.outputs[inv])


@PROPERTY
@given(a=automata())
def test_minimised_machine_is_equivalent_reachable_and_minimal(a):
    m = a.minimize()
    assert equivalent_states(a, a.start, m, m.start)
    assert m.start == 0 and len(m.reachable()) == m.n_states
    for p in range(m.n_states):
        for q in range(p + 1, m.n_states):
            assert not equivalent_states(m, p, m, q), (p, q)


@PROPERTY
@given(a=automata(), data=st.data())
def test_minimisation_is_canonical(a, data):
    """Minimising twice, or minimising a relabelled copy, gives the same arrays: BFS numbering
    from the start makes the minimal machine a canonical form."""
    m = a.minimize()
    again = m.minimize()
    perm = np.array(data.draw(st.permutations(range(a.n_states))))
    other = relabelled(a, perm).minimize()
    for b in (again, other):
        assert b.start == m.start
        np.testing.assert_array_equal(b.transitions, m.transitions)
        np.testing.assert_array_equal(b.outputs, m.outputs)


@PROPERTY
@given(a=automata(), data=st.data())
def test_isomorphism_of_a_relabelled_copy_is_the_relabelling(a, data):
    perm = np.array(data.draw(st.permutations(range(a.n_states))))
    b = relabelled(a, perm)
    f = a.isomorphism(b)
    assert f is not None
    reach = [int(q) for q in a.reachable()]
    assert sorted(f) == sorted(reach)
    for q in reach:
        assert f[q] == perm[q]
        assert a.outputs[q] == b.outputs[f[q]]
        for s in range(a.n_symbols):
            assert f[int(a.transitions[q, s])] == b.transitions[f[q], s]


@PROPERTY
@given(a=automata(max_states=6), data=st.data())
def test_splitting_a_state_keeps_the_behaviour(a, data):
    """Add a copy of a state (same output and successors) and send some edges into it: the machine
    is equivalent, minimises to the same machine, and is isomorphic only if the copy is unreachable."""
    q = data.draw(st.integers(0, a.n_states - 1))
    n = a.n_states
    tr = np.vstack([a.transitions, a.transitions[q]])
    redirect = np.array(data.draw(st.lists(st.booleans(), min_size=tr.size, max_size=tr.size))).reshape(tr.shape)
    tr = np.where((tr == q) & redirect, n, tr)
    b = Automaton(tr, a.start, np.append(a.outputs, a.outputs[q]))
    assert equivalent_states(a, a.start, b, b.start)
    assert a.is_equivalent(b)
    np.testing.assert_array_equal(b.minimize().transitions, a.minimize().transitions)
    if a.is_isomorphic(b):
        assert len(b.reachable()) == len(a.reachable())


@PROPERTY
@given(a=automata(), data=st.data())
def test_changing_an_output_of_a_minimal_machine_changes_its_behaviour(a, data):
    m = a.minimize()
    q = data.draw(st.integers(0, m.n_states - 1))
    new = data.draw(st.integers(0, 3).filter(lambda o: o != m.outputs[q]))
    outputs = m.outputs.copy()
    outputs[q] = new
    b = Automaton(m.transitions, m.start, outputs)
    assert not m.is_isomorphic(b) and not m.is_equivalent(b)
    assert not equivalent_states(m, m.start, b, b.start)


@PROPERTY
@given(a=automata(), seed=st.integers(0, 2**32 - 1))
def test_minimised_machine_gives_the_same_labels(a, seed):
    words = np.random.default_rng(seed).integers(0, a.n_symbols, size=(8, 12))
    np.testing.assert_array_equal(a.minimize().labels(words), a.labels(words))
