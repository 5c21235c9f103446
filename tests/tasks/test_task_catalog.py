"""Task catalog: every spec, labels against brute force, malformed specs."""
import numpy as np
import pytest
import torch

from workbench.tasks import TASK_SPECS_HELP, make_task

SPECS = ["parity", "even_pairs", "cycle_navigation", "cyclic:7", "modarith:5", "modarith_lr:5", "fsm:6",
         "fsm:8:3@4", "group:S3", "group:A4", "group:Q8/gens", "group:Z2xZ4", "group:perm:(0 1 2)(3 4),(0 1)",
         "group:D4/gens"]


@pytest.mark.parametrize("spec", SPECS)
def test_task_fields(spec):
    t = make_task(spec)
    assert t.spec == spec
    assert t.automaton.n_symbols == t.d_vocab == len(t.token_names)
    assert t.automaton.n_outputs <= t.n_classes
    assert 1.0 / t.n_classes <= t.chance <= 1.0
    if t.group is not None:
        te = t.token_elements
        assert te.shape == (t.d_vocab,)
        # word-problem automaton: delta(q, v) = table[token_elements[v], q]
        assert np.array_equal(t.automaton.transitions, t.group.table[te][:, :].T)
        assert t.automaton.start == 0 and np.array_equal(t.automaton.outputs, np.arange(t.group.order))


def _prefix_products(G, elements):
    s = np.arange(G.degree)
    out = []
    for g in elements:
        s = G.perms[g][s]  # s_t = g_t · s_{t-1}: apply s_{t-1} first
        out.append(G.index(s))
    return out


@pytest.mark.parametrize("spec", ["group:S3", "group:A5", "group:Q8/gens", "cyclic:6", "parity", "cycle_navigation"])
def test_word_problem_labels_brute_force(spec):
    t = make_task(spec)
    b = t.sample(8, 20, torch.Generator().manual_seed(1))
    for row, lab in zip(b.tokens.tolist(), b.labels.tolist(), strict=True):
        assert lab == _prefix_products(t.group, [int(t.token_elements[v]) for v in row])


def test_simple_tasks_brute_force():
    g = torch.Generator().manual_seed(2)
    b = make_task("parity").sample(16, 25, g)
    assert np.array_equal(b.labels.numpy(), np.cumsum(b.tokens.numpy(), axis=1) % 2)
    b = make_task("cyclic:7").sample(16, 25, g)
    assert np.array_equal(b.labels.numpy(), np.cumsum(b.tokens.numpy(), axis=1) % 7)
    b = make_task("cycle_navigation").sample(16, 25, g)
    assert np.array_equal(b.labels.numpy(), np.cumsum(b.tokens.numpy() - 1, axis=1) % 5)
    b = make_task("even_pairs").sample(16, 25, g)
    for row, lab in zip(b.tokens.tolist(), b.labels.tolist(), strict=True):
        for t in range(25):
            pairs = sum(row[i] != row[i + 1] for i in range(t))
            assert lab[t] == int(pairs % 2 == 0)


def _eval_precedence(tokens, m):
    text = []
    for v in tokens:
        text.append(str(v) if v < m else "+-*"[v - m])
    if text[-1] in "+-*":
        text = text[:-1]
    return eval("".join(text)) % m  # Python's precedence: '*' before '+' and '-'


def _eval_lr(tokens, m):
    if tokens[-1] >= m:
        tokens = tokens[:-1]
    v = tokens[0]
    for op, r in zip(tokens[1::2], tokens[2::2], strict=True):
        v = [v + r, v - r, v * r][op - m] % m
    return v % m


@pytest.mark.parametrize("m", [2, 3, 5, 6])
def test_modarith_brute_force(m):
    g = torch.Generator().manual_seed(m)
    for family, ref in (("modarith", _eval_precedence), ("modarith_lr", _eval_lr)):
        t = make_task(f"{family}:{m}")
        b = t.sample(20, 13, g)
        toks = b.tokens.tolist()
        assert all(x < m for row in toks for x in row[0::2]) and all(x >= m for row in toks for x in row[1::2])
        for row, lab in zip(toks, b.labels.tolist(), strict=True):
            assert lab == [ref(row[: i + 1], m) for i in range(13)]


def test_modarith_sink_and_minimal():
    t = make_task("modarith:5")
    # two residues in a row is malformed input: the automaton goes to a sink (label 0 forever)
    states = t.automaton.run(np.array([[1, 2, 5, 3]]))
    assert len(set(states[0, 1:].tolist())) == 1 and t.automaton.outputs[states[0, -1]] == 0
    assert t.automaton.minimize().n_states == t.automaton.n_states
    assert make_task("modarith:2").automaton.n_states < 2 * 4 + 4 + 1  # +1 = -1 mod 2 merges states


def test_fsm_determinism_and_defaults():
    a, b, c = make_task("fsm:6"), make_task("fsm:6:6@0"), make_task("fsm:6@1")
    assert np.array_equal(a.automaton.transitions, b.automaton.transitions)
    assert not np.array_equal(a.automaton.transitions, c.automaton.transitions)
    assert a.d_vocab == 6 and a.n_classes == 6 and a.automaton.start == 0
    assert make_task("fsm:8:3@4").automaton.transitions.shape == (8, 3)


def test_group_task_generators_and_names():
    t = make_task("group:S4/gens")
    assert t.d_vocab == 2 and t.n_classes == 24
    assert t.token_names == ["(0 1)", "(0 1 2 3)"]
    assert make_task("group:S3").token_names[0] == "()"
    assert make_task("cyclic:5").token_elements.tolist() == [0, 1, 2, 3, 4]
    assert make_task("cycle_navigation").token_elements.tolist() == [4, 0, 1]


@pytest.mark.parametrize("bad", [
    "cyclic:0", "cyclic:x", "cyclic:", "cyclic:-3", "cyclic:2001", "fsm:-1", "fsm:0", "fsm:3:0", "fsm:3:x",
    "fsm:3@x", "fsm:3:2:1", "group:S9", "group:Foo", "group:", "group:/gens", "group:perm:(0 0)",
    "group:perm:(0 1", "modarith:1", "modarith:x", "modarith_lr:0", "blah", "parity:3", "", "Parity",
    "group:S5xS4",
])
def test_malformed_specs(bad):
    with pytest.raises(ValueError) as info:
        make_task(bad)
    msg = str(info.value)
    assert repr(bad.strip()) in msg or repr(bad) in msg
    assert TASK_SPECS_HELP in msg


def test_non_string_spec():
    with pytest.raises(ValueError, match="string"):
        make_task(3)
