"""The task catalog: ``make_task(spec)`` for every spec of the design (see ``TASK_SPECS_HELP``)."""
from __future__ import annotations

import re

import numpy as np

from .automata import Automaton
from .groups import GROUP_NAMES_HELP, MAX_ORDER, Group
from .sampling import Task
from .user_automaton import read_automaton_file

__all__ = ["make_task", "TASK_SPECS_HELP", "MAX_MODULUS", "MAX_FSM_STATES"]

#: Largest modulus for ``modarith`` tasks (the precedence automaton has 2m² + 2m + 1 states).
MAX_MODULUS = 200
#: Largest number of states / symbols for ``fsm`` tasks.
MAX_FSM_STATES = 10_000

TASK_SPECS_HELP = f"""\
accepted task specs:
  parity                 bits; label = number of ones mod 2 (word problem of Z2)
  even_pairs             bits; label = 1 if the number of unequal adjacent pairs is even (first == last)
  cycle_navigation       actions 0,1,2 = move -1,0,+1 on a 5-cycle from 0; label = position (Z5)
  cyclic:m               tokens 0..m-1; label = sum mod m (group Zm), 1 <= m <= {MAX_ORDER}, e.g. cyclic:5
  modarith:m             residues 0..m-1 alternating with + - * ('*' binds tighter, Deletang et al.);
                         label = value mod m of the expression so far, 2 <= m <= {MAX_MODULUS}, e.g. modarith:5
  modarith_lr:m          same tokens, evaluated left to right (no precedence), e.g. modarith_lr:5
  fsm:n[:k][@seed]       random complete DFA, n states, k symbols (default k = n), start 0,
                         label = state id, seed default 0; n, k <= {MAX_FSM_STATES}, e.g. fsm:5, fsm:8:3@1
  group:NAME             word problem, one token per element, e.g. group:S3, group:A5, group:Z2xZ4
  group:NAME/gens        same group, one token per generator, e.g. group:S4/gens
  group:perm:GENS[/gens] any permutation group, e.g. group:perm:(0 1 2)(3 4),(0 1)
  automaton:PATH.json    your own automaton: {{"transitions": [[next state per symbol] per state],
                         "start": int, "outputs": [label per state], "token_names": [...] (optional)}}
group NAME: {GROUP_NAMES_HELP}"""


def _bad(spec, reason: str) -> ValueError:
    return ValueError(f"bad task spec {spec!r}: {reason}\n{TASK_SPECS_HELP}")


def _int_arg(spec: str, text: str, what: str, lo: int, hi: int) -> int:
    if not re.fullmatch(r"\d+", text or ""):
        raise _bad(spec, f"{what} must be an integer in [{lo}, {hi}], got {text!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise _bad(spec, f"{what} must be in [{lo}, {hi}], got {value}")
    return value


def make_task(spec: str) -> Task:
    """Build a task from its spec string.

    Parameters
    ----------
    spec : str
        See ``TASK_SPECS_HELP`` (printed by ``python -m workbench --help``).

    Raises
    ------
    ValueError
        Any malformed spec; the message names the spec and lists the accepted forms.
    """
    if not isinstance(spec, str):
        raise _bad(spec, "a task spec is a string")
    task = _make(spec, spec.strip())
    task.spec = spec.strip()  # keep the user's spelling (fsm:5 stays fsm:5, not fsm:5:5@0)
    return task


def _make(spec: str, s: str) -> Task:
    if s == "parity":
        return _group_word_task("parity", "parity", Group.named("Z2"), [0, 1], ["0", "1"],
                                "bits; label = number of ones mod 2")
    if s == "even_pairs":
        return _even_pairs()
    if s == "cycle_navigation":
        G = Group.named("Z5")
        toks = [G.index([(i + a) % 5 for i in range(5)]) for a in (-1, 0, 1)]
        return _group_word_task("cycle_navigation", "cycle_navigation", G, toks, ["-1", "0", "+1"],
                                "actions 0,1,2 move -1,0,+1 on a 5-cycle starting at 0; label = position")
    family, _, arg = s.partition(":")
    if family == "cyclic":
        m = _int_arg(spec, arg, "m", 1, MAX_ORDER)
        G = Group.named(f"Z{m}")
        toks = [G.index([(i + a) % m for i in range(m)]) for a in range(m)]
        return _group_word_task(f"cyclic:{m}", "cyclic", G, toks, [str(a) for a in range(m)],
                                f"tokens 0..{m - 1}; label = running sum mod {m}")
    if family in ("modarith", "modarith_lr"):
        m = _int_arg(spec, arg, "m", 2, MAX_MODULUS)
        return _modarith(m, precedence=family == "modarith")
    if family == "fsm":
        mt = re.fullmatch(r"([^:@]*)(?::([^:@]*))?(?:@(.*))?", arg)
        if not mt:
            raise _bad(spec, "expected fsm:n[:k][@seed]")
        n = _int_arg(spec, mt.group(1), "n (states)", 1, MAX_FSM_STATES)
        k = n if mt.group(2) is None else _int_arg(spec, mt.group(2), "k (symbols)", 1, MAX_FSM_STATES)
        seed = 0 if mt.group(3) is None else _int_arg(spec, mt.group(3), "seed", 0, 2**63 - 1)
        return _fsm(n, k, seed)
    if family == "automaton":
        if not arg:
            raise _bad(spec, "missing path: automaton:PATH.json")
        record, what = read_automaton_file(arg, spec)
        return Task.from_record(record, spec=spec, what=what)
    if family == "group":
        name, gens = arg, False
        if name.endswith("/gens"):
            name, gens = name[: -len("/gens")], True
        if not name:
            raise _bad(spec, "missing group name")
        try:
            G = Group.named(name)
        except ValueError as exc:
            raise _bad(spec, str(exc)) from None
        if gens:
            toks = list(G.generators)
            names = [G.element_names[g] for g in toks]
            return _group_word_task(f"group:{G.name}/gens", "group", G, toks, names,
                                    f"word problem of {G.name}, one token per generator")
        return _group_word_task(f"group:{G.name}", "group", G, list(range(G.order)), list(G.element_names),
                                f"word problem of {G.name}, one token per element")
    raise _bad(spec, f"unknown task family {family!r}")


def _group_word_task(spec, family, G: Group, token_elements, token_names, description) -> Task:
    """Word problem: ``delta(q, v) = table[token_elements[v], q]``, state = output = element id."""
    te = np.asarray(token_elements, dtype=np.int64)
    automaton = Automaton(G.table[te, :].T.copy(), G.identity, np.arange(G.order))
    return Task(spec=spec, family=family, d_vocab=len(te), n_classes=G.order, automaton=automaton,
                group=G, token_elements=te, token_names=list(token_names), description=description)


def _even_pairs() -> Task:
    # state 0 = nothing read (0 pairs: even); state 1 + 2*first + last afterwards
    tr = np.zeros((5, 2), dtype=np.int64)
    for x in (0, 1):
        tr[0, x] = 1 + 2 * x + x
        for first in (0, 1):
            for last in (0, 1):
                tr[1 + 2 * first + last, x] = 1 + 2 * first + x
    out = np.array([1] + [int(f == l) for f in (0, 1) for l in (0, 1)])
    return Task(spec="even_pairs", family="even_pairs", d_vocab=2, n_classes=2,
                automaton=Automaton(tr, 0, out), token_names=["0", "1"],
                description="bits; label = 1 if the number of unequal adjacent pairs is even")


def _fsm(n: int, k: int, seed: int) -> Task:
    rng = np.random.default_rng(seed)
    tr = rng.integers(0, n, size=(n, k), dtype=np.int64)
    spec = f"fsm:{n}:{k}@{seed}"
    return Task(spec=spec, family="fsm", d_vocab=k, n_classes=n, automaton=Automaton(tr, 0, np.arange(n)),
                token_names=[str(a) for a in range(k)],
                description=f"uniform random complete DFA with {n} states and {k} symbols (seed {seed}); label = state id")


def _modarith(m: int, precedence: bool) -> Task:
    """Automaton for expressions ``r (op r)*`` over Z_m; tokens ``0..m-1`` then ``+ - *``.

    Precedence machine, states before minimisation:
      ``A(S, P)``  after a residue: S = sum of finished terms, P = current signed product term;
      ``T(S, s)``  after ``+``/``-``: waiting for a new term with sign s;
      ``M(S, P)``  after ``*``: waiting for a factor of the term P;
      sink         malformed input (two residues or two operators in a row), output 0.
    Label = value of the expression read so far, a trailing operator ignored: S + P for A and M,
    S for T. Left-to-right machine: ``V(v)`` after a residue, ``W(v, op)`` after an operator.
    The result is minimised (states renumbered breadth-first from the start).
    """
    PLUS, MINUS, TIMES = m, m + 1, m + 2
    if precedence:
        A = lambda S, P: S * m + P  # noqa: E731
        T = lambda S, sg: m * m + 2 * S + sg  # noqa: E731  (sg 0 = +, 1 = -)
        M = lambda S, P: m * m + 2 * m + S * m + P  # noqa: E731
        sink = 2 * m * m + 2 * m
        n = sink + 1
        tr = np.full((n, m + 3), sink, dtype=np.int64)
        out = np.zeros(n, dtype=np.int64)
        for S in range(m):
            for P in range(m):
                a = A(S, P)
                out[a] = (S + P) % m
                tr[a, PLUS] = T((S + P) % m, 0)
                tr[a, MINUS] = T((S + P) % m, 1)
                tr[a, TIMES] = M(S, P)
                mu = M(S, P)
                out[mu] = (S + P) % m
                for r in range(m):
                    tr[mu, r] = A(S, (P * r) % m)
            for sg in (0, 1):
                t = T(S, sg)
                out[t] = S
                for r in range(m):
                    tr[t, r] = A(S, (r if sg == 0 else -r) % m)
        start = T(0, 0)
    else:
        V = lambda v: v  # noqa: E731
        W = lambda v, op: m + 3 * v + op  # noqa: E731
        sink = 4 * m
        n = sink + 1
        tr = np.full((n, m + 3), sink, dtype=np.int64)
        out = np.zeros(n, dtype=np.int64)
        apply = [lambda v, r: (v + r) % m, lambda v, r: (v - r) % m, lambda v, r: (v * r) % m]
        for v in range(m):
            out[V(v)] = v
            for op in range(3):
                tr[V(v), m + op] = W(v, op)
                out[W(v, op)] = v
                for r in range(m):
                    tr[W(v, op), r] = V(apply[op](v, r))
        start = W(0, 0)
    automaton = Automaton(tr, start, out).minimize()
    family = "modarith" if precedence else "modarith_lr"
    how = "'*' binds tighter than '+' and '-'" if precedence else "evaluated left to right"
    return Task(spec=f"{family}:{m}", family=family, d_vocab=m + 3, n_classes=m, automaton=automaton,
                token_names=[str(r) for r in range(m)] + ["+", "-", "*"], alternating=m,
                description=f"residues mod {m} alternating with + - * ({how}); label = value so far")
