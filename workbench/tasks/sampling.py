"""Tasks and batches: token sequences with per-step labels and automaton states.

Sampling draws tokens with ``torch.randint`` (reproducible through a ``torch.Generator``) and labels
them by running the task's automaton in numpy (one gather per time step, vectorised over the
batch), several million tokens per second on one core (``benchmarks/bench_sampling.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from .automata import Automaton
from .groups import Group
from .user_automaton import automaton_record, parse_record

__all__ = ["Batch", "Task", "CHANCE_LENGTH"]

#: Length at which :attr:`Task.chance` is measured (the paper's out-of-distribution test length).
CHANCE_LENGTH = 500


@dataclass
class Batch:
    """A batch of sequences.

    Attributes
    ----------
    tokens : torch.Tensor
        ``[B, T]`` int64.
    labels : torch.Tensor
        ``[B, T]`` int64, label after each step (``labels[:, t]`` labels ``tokens[:, : t + 1]``).
    states : torch.Tensor
        ``[B, T]`` int64, automaton state after each step (group tasks: element id of the prefix
        product ``g_t ⋯ g_1``).
    """

    tokens: torch.Tensor
    labels: torch.Tensor
    states: torch.Tensor

    @property
    def final_labels(self) -> torch.Tensor:
        """``[B]`` label after the whole sequence."""
        return self.labels[:, -1]

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def length(self) -> int:
        return int(self.tokens.shape[1])

    def to(self, device) -> "Batch":
        return Batch(self.tokens.to(device), self.labels.to(device), self.states.to(device))


def _check_positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(eq=False)
class Task:
    """A state-tracking task: an automaton, its token alphabet and, for group tasks, its group.

    Built by :func:`workbench.tasks.make_task`; see ``TASK_SPECS_HELP`` for the specs.

    Attributes
    ----------
    spec : str
        Canonical spec string (round-trips through ``make_task``).
    family : str
        ``parity``, ``cyclic``, ``fsm``, ``modarith``, ``modarith_lr``, ``even_pairs``,
        ``cycle_navigation``, ``group`` or ``automaton`` (a user's, see :meth:`from_automaton`).
    d_vocab : int
    n_classes : int
    automaton : Automaton
        ``n_symbols == d_vocab``; ``outputs`` are the labels.
    group : Group or None
    token_elements : np.ndarray or None
        ``[d_vocab]`` element id of each token, for group-structured tasks (group, cyclic,
        parity as Z2, cycle_navigation as Z5). Then ``automaton.transitions[q, v] =
        group.table[token_elements[v], q]`` and the state is the element id.
    token_names : list[str]
    description : str
    alternating : int or None
        For ``modarith`` tasks: the number of residue tokens ``m``. Tokens at even positions
        (0-based) are residues ``0 … m-1``, at odd positions operators ``m … m+2``.
    """

    spec: str
    family: str
    d_vocab: int
    n_classes: int
    automaton: Automaton
    group: Group | None = None
    token_elements: np.ndarray | None = None
    token_names: list[str] = field(default_factory=list)
    description: str = ""
    alternating: int | None = None

    def __repr__(self) -> str:
        g = f", group={self.group.name}" if self.group is not None else ""
        return f"Task({self.spec!r}, d_vocab={self.d_vocab}, n_classes={self.n_classes}, states={self.automaton.n_states}{g})"

    @classmethod
    def from_automaton(cls, transitions, start: int, outputs, token_names=None,
                       spec: str = "automaton") -> Task:
        """A task from your own automaton (what ``make_task("automaton:PATH.json")`` reads).

        Parameters
        ----------
        transitions : [[next state per symbol] per state], list or int array [n_states, n_symbols]
        start : int, the state before any token.
        outputs : [label per state], non-negative ints; ``n_classes = max(outputs) + 1``.
        token_names : optional, one distinct string per symbol (default ``"0", "1", ...``).
        spec : recorded as ``task.spec``.

        Raises ``ValueError`` naming the bad field. The states are kept as given (not minimised).
        """
        record = {"transitions": transitions, "start": start, "outputs": outputs,
                  "token_names": token_names}
        return cls.from_record(record, spec=spec, what=f"Task.from_automaton (spec {spec!r})")

    @classmethod
    def from_record(cls, record: dict, spec: str = "automaton", what: str | None = None) -> Task:
        """A task from the automaton JSON object (``automaton:PATH.json``, a checkpoint's
        ``"automaton"``); ``what`` names the source in error messages."""
        automaton, names = parse_record(record, what or f"automaton task {spec!r}")
        n, k = automaton.n_states, automaton.n_symbols
        return cls(spec=spec, family="automaton", d_vocab=k, n_classes=automaton.n_outputs,
                   automaton=automaton, token_names=names,
                   description=f"user automaton: {n} states, {k} symbols, "
                               f"{automaton.n_outputs} labels; label = output of the state")

    def automaton_record(self) -> dict:
        """``{"transitions", "start", "outputs", "token_names"}``, JSON-safe: the automaton file
        format (``make_task("automaton:PATH.json")``), for any task."""
        return automaton_record(self.automaton, self.token_names)

    # ---- lengths ----------------------------------------------------------------------------

    def valid_length(self, length: int) -> int:
        """Nearest length the task accepts at or above ``length``: ``modarith`` tasks need odd
        lengths (a whole expression), every other task accepts any ``length >= 1``."""
        length = _check_positive_int(length, "length")
        if self.alternating is not None and length % 2 == 0:
            return length + 1
        return length

    def scored_steps(self, length: int) -> torch.Tensor:
        """``[length]`` bool: True at the steps whose prefix is a whole input (its length passes
        :meth:`valid_length` unchanged). Every-step scores count only these: a ``modarith``
        prefix that ends in an operator is not an expression, no protocol scores it and training
        never sees it; every step of every other task counts."""
        length = _check_positive_int(length, "length")
        if self.alternating is None:
            return torch.ones(length, dtype=torch.bool)
        return torch.arange(1, length + 1) % 2 == 1

    def random_length(self, min_length: int, max_length: int, generator: torch.Generator | None = None) -> int:
        """A length drawn uniformly from ``[min_length, max_length]`` (both inclusive), then passed
        through :meth:`valid_length`."""
        lo = _check_positive_int(min_length, "min_length")
        hi = _check_positive_int(max_length, "max_length")
        if hi < lo:
            raise ValueError(f"max_length={hi} < min_length={lo}")
        n = int(torch.randint(lo, hi + 1, (1,), generator=generator).item())
        return self.valid_length(n)

    # ---- sampling ---------------------------------------------------------------------------

    def sample_tokens(self, batch_size: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B, T]`` int64 tokens from the task's input distribution (uniform, or alternating
        residue/operator for ``modarith``)."""
        B = _check_positive_int(batch_size, "batch_size")
        T = _check_positive_int(length, "length")
        if self.alternating is None:
            return torch.randint(0, self.d_vocab, (B, T), generator=generator)
        m = self.alternating
        residues = torch.randint(0, m, (B, T), generator=generator)
        ops = torch.randint(m, m + 3, (B, T), generator=generator)
        is_residue = (torch.arange(T) % 2 == 0)[None, :]
        return torch.where(is_residue, residues, ops)

    def label(self, tokens) -> Batch:
        """Run the automaton on given tokens ``[B, T]`` and return the :class:`Batch`."""
        tokens = torch.as_tensor(tokens, dtype=torch.int64)
        states = self.automaton.run(tokens.numpy())
        labels = self.automaton.outputs[states]
        return Batch(tokens, torch.from_numpy(labels), torch.from_numpy(states))

    def sample(self, batch_size: int, length: int, generator: torch.Generator | None = None) -> Batch:
        """A random batch, ``[batch_size, length]``.

        Exactly ``length`` tokens are drawn. For ``modarith`` tasks an even ``length`` gives a
        prefix that ends with an operator: its last label is the value of the expression before
        that operator (a trailing operator is ignored). Call :meth:`valid_length` first to get
        whole (odd-length) expressions as in Delétang et al.

        Parameters
        ----------
        batch_size, length : int
            Both >= 1.
        generator : torch.Generator, optional
            Source of randomness (the global torch RNG if None).
        """
        return self.label(self.sample_tokens(batch_size, length, generator))

    def eval_set(self, length: int, n_sequences: int = 512, seed: int = 0) -> Batch:
        """Deterministic evaluation batch ``[n_sequences, length]`` for a given (length, seed).

        Each length gets its own stream (the generator seed mixes ``seed`` and ``length``), so
        evaluation sets at different lengths are independent. Even lengths of ``modarith`` are
        handled as in :meth:`sample`.
        """
        length = _check_positive_int(length, "length")
        n_sequences = _check_positive_int(n_sequences, "n_sequences")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + length * 7919 + 17) % (2**63 - 1))
        return self.sample(n_sequences, length, g)

    # ---- chance level -----------------------------------------------------------------------

    def label_distribution(self, length: int = CHANCE_LENGTH) -> np.ndarray:
        """Exact distribution ``[n_classes]`` of the label after ``length`` tokens drawn from the
        sampling distribution (propagates the state distribution through the automaton)."""
        length = _check_positive_int(length, "length")
        A = self.automaton
        p = np.zeros(A.n_states)
        p[A.start] = 1.0
        V = self.d_vocab
        uniform = np.full(V, 1.0 / V)
        if self.alternating is not None:
            m = self.alternating
            res = np.r_[np.full(m, 1.0 / m), np.zeros(3)]
            ops = np.r_[np.zeros(m), np.full(3, 1.0 / 3)]
        for t in range(length):
            probs = uniform if self.alternating is None else (res if t % 2 == 0 else ops)
            cols = np.nonzero(probs)[0]
            w = (p[:, None] * probs[None, cols]).ravel()
            p = np.bincount(A.transitions[:, cols].ravel(), weights=w, minlength=A.n_states)
        return np.bincount(A.outputs, weights=p, minlength=self.n_classes)

    @cached_property
    def chance(self) -> float:
        """Accuracy of always predicting the most frequent label at length
        :data:`CHANCE_LENGTH` (``valid_length`` of it) under the sampling distribution.

        Equal to ``1 / n_classes`` for tasks with uniform labels (group and cyclic word problems,
        parity, cycle navigation); larger for skewed tasks (random FSMs, modular arithmetic with
        composite moduli, some ``/gens`` tasks). It can be 1.0 for degenerate tasks whose label is
        fixed by the length (``group:Z4/gens`` has one generator): normalize with care.
        """
        if self.token_elements is not None and self.group is not None and len(np.unique(self.token_elements)) == self.group.order:
            return 1.0 / self.n_classes  # every element is a token: the product is uniform
        dist = self.label_distribution(self.valid_length(CHANCE_LENGTH))
        top = float(dist.max())
        return 1.0 / self.n_classes if abs(top - 1.0 / self.n_classes) < 1e-9 else top
