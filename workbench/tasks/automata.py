"""Complete deterministic Moore machines: run on token batches, minimise, test isomorphism.

Every task in :mod:`workbench.tasks` is backed by one :class:`Automaton`; its per-step states and
outputs are the ground truth that training uses (labels) and that the analyses compare hidden
states against (automaton extraction).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["Automaton"]


def _as_numpy_tokens(tokens) -> tuple[np.ndarray, bool]:
    """Return ``(int64 array, was_torch)``."""
    if hasattr(tokens, "detach"):
        return tokens.detach().cpu().numpy().astype(np.int64, copy=False), True
    return np.asarray(tokens, dtype=np.int64), False


@dataclass(frozen=True, eq=False)
class Automaton:
    """Complete deterministic Moore machine.

    Attributes
    ----------
    transitions : np.ndarray
        ``[n_states, n_symbols]`` int64, ``transitions[q, a]`` = next state.
    start : int
        Start state (the state before any token).
    outputs : np.ndarray
        ``[n_states]`` int64, label emitted in each state.
    """

    transitions: np.ndarray
    start: int
    outputs: np.ndarray

    def __post_init__(self):
        tr = np.asarray(self.transitions)
        out = np.asarray(self.outputs)
        if tr.ndim != 2 or tr.shape[0] < 1 or tr.shape[1] < 1:
            raise ValueError(f"transitions must be [n_states >= 1, n_symbols >= 1], got shape {tr.shape}")
        if not np.issubdtype(tr.dtype, np.integer) or tr.min() < 0 or tr.max() >= tr.shape[0]:
            raise ValueError(f"transitions must be integers in [0, {tr.shape[0]}) (state ids)")
        if out.shape != (tr.shape[0],) or not np.issubdtype(out.dtype, np.integer) or out.min() < 0:
            raise ValueError(f"outputs must be non-negative integers of shape [{tr.shape[0]}], got {out.shape}")
        if not (0 <= int(self.start) < tr.shape[0]):
            raise ValueError(f"start={self.start} is not a state id in [0, {tr.shape[0]})")
        object.__setattr__(self, "transitions", tr.astype(np.int64))
        object.__setattr__(self, "outputs", out.astype(np.int64))
        object.__setattr__(self, "start", int(self.start))

    @property
    def n_states(self) -> int:
        return int(self.transitions.shape[0])

    @property
    def n_symbols(self) -> int:
        return int(self.transitions.shape[1])

    @property
    def n_outputs(self) -> int:
        """``max(outputs) + 1``."""
        return int(self.outputs.max()) + 1

    def __repr__(self) -> str:
        return f"Automaton(n_states={self.n_states}, n_symbols={self.n_symbols}, n_outputs={self.n_outputs}, start={self.start})"

    # ---- running ----------------------------------------------------------------------------

    def run(self, tokens, start=None):
        """States after each prefix.

        Parameters
        ----------
        tokens : np.ndarray or torch.Tensor
            ``[B, T]`` (or ``[T]``) symbols in ``[0, n_symbols)``.
        start : int or array ``[B]``, optional
            Start state(s); default ``self.start``.

        Returns
        -------
        Same type as ``tokens`` (torch int64 for torch input), ``[B, T]`` (or ``[T]``):
        ``states[:, t]`` is the state after ``tokens[:, : t + 1]``.
        """
        tok, was_torch = _as_numpy_tokens(tokens)
        squeeze = tok.ndim == 1
        if squeeze:
            tok = tok[None, :]
        if tok.ndim != 2:
            raise ValueError(f"tokens must have shape [B, T] or [T], got {tok.shape}")
        if tok.size and (tok.min() < 0 or tok.max() >= self.n_symbols):
            raise ValueError(
                f"tokens must lie in [0, {self.n_symbols}), got values in [{tok.min()}, {tok.max()}]"
            )
        B, T = tok.shape
        flat = self.transitions.ravel()
        k = self.n_symbols
        states = np.empty((B, T), dtype=np.int64)
        q = np.broadcast_to(np.asarray(self.start if start is None else start, dtype=np.int64), (B,)).copy()
        # One gather per step over the flattened table: O(T) numpy calls, vectorised over B.
        for t in range(T):
            q = flat[q * k + tok[:, t]]
            states[:, t] = q
        if squeeze:
            states = states[0]
        if was_torch:
            import torch

            return torch.from_numpy(states)
        return states

    def labels(self, tokens):
        """Outputs after each prefix, same shape and type as :meth:`run`."""
        states = self.run(tokens)
        if hasattr(states, "numpy"):
            import torch

            return torch.from_numpy(self.outputs[states.numpy()])
        return self.outputs[states]

    # ---- structure --------------------------------------------------------------------------

    def reachable(self) -> np.ndarray:
        """Ids of the states reachable from ``start``, in BFS order (symbols in index order)."""
        seen = np.zeros(self.n_states, dtype=bool)
        seen[self.start] = True
        order = [self.start]
        queue = deque(order)
        while queue:
            q = queue.popleft()
            for r in self.transitions[q]:
                if not seen[r]:
                    seen[r] = True
                    order.append(int(r))
                    queue.append(int(r))
        return np.array(order, dtype=np.int64)

    def minimize(self) -> "Automaton":
        """Reachable, Moore-minimal equivalent machine; states renumbered BFS from the start.

        Moore's partition refinement: start from the partition by output, split blocks by the
        blocks of their successors until stable (each round is one ``np.unique`` over the
        ``[n, 1 + n_symbols]`` signature matrix; at most ``n`` rounds).
        """
        reach = self.reachable()
        remap = np.full(self.n_states, -1, dtype=np.int64)
        remap[reach] = np.arange(len(reach))
        tr = remap[self.transitions[reach]]
        out = self.outputs[reach]
        _, block = np.unique(out, return_inverse=True)
        n_blocks = block.max() + 1
        while True:
            sig = np.concatenate([block[:, None], block[tr]], axis=1)
            _, new_block = np.unique(sig, axis=0, return_inverse=True)
            new_block = new_block.ravel()
            if new_block.max() + 1 == n_blocks:
                break
            block, n_blocks = new_block, new_block.max() + 1
        # quotient machine, then renumber BFS from the start
        rep = np.zeros(n_blocks, dtype=np.int64)
        rep[block[::-1]] = np.arange(len(block))[::-1]  # smallest member of each block
        q_tr = block[tr[rep]]
        q_out = out[rep]
        quotient = Automaton(q_tr, int(block[0]), q_out)
        return quotient._renumber_bfs()

    def _renumber_bfs(self) -> "Automaton":
        order = self.reachable()
        remap = np.full(self.n_states, -1, dtype=np.int64)
        remap[order] = np.arange(len(order))
        return Automaton(remap[self.transitions[order]], 0, self.outputs[order])

    def isomorphism(self, other: "Automaton") -> dict[int, int] | None:
        """A state bijection ``f`` with ``f(start) = other.start``, ``f(δ(q, a)) = δ'(f(q), a)``
        and equal outputs, between the *reachable* parts; ``None`` if there is none.

        States unreachable from the start never influence behaviour and are ignored. With a fixed
        start, the map is forced along BFS, so this is linear time. Outputs must match exactly
        (labels, not up to renaming).
        """
        if self.n_symbols != other.n_symbols:
            return None
        f = {self.start: other.start}
        used = {other.start}
        queue = deque([self.start])
        while queue:
            q = queue.popleft()
            p = f[q]
            if self.outputs[q] != other.outputs[p]:
                return None
            for a in range(self.n_symbols):
                q2, p2 = int(self.transitions[q, a]), int(other.transitions[p, a])
                if q2 in f:
                    if f[q2] != p2:
                        return None
                elif p2 in used:
                    return None
                else:
                    f[q2] = p2
                    used.add(p2)
                    queue.append(q2)
        if len(used) != len(other.reachable()):
            return None
        return {int(k): int(v) for k, v in f.items()}

    def is_isomorphic(self, other: "Automaton") -> bool:
        """Reachable parts isomorphic (see :meth:`isomorphism`)."""
        return self.isomorphism(other) is not None

    def is_equivalent(self, other: "Automaton") -> bool:
        """Same output sequence on every input: the minimised machines are isomorphic."""
        return self.minimize().is_isomorphic(other.minimize())
