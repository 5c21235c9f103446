"""Snap a learned, approximate representation to the exact one it approximates, and test it.

Trained group models are representations only to about 1e-2 (`analyses.groups.representations` says
"approximately <irreps>"), and `analyses.drift` shows the cost: their states walk away and they
fail at a few thousand steps. Is the exact representation the analysis names really what the model
computes? The causal test here answers it:

1. from the representation analysis, the change of basis `T` into irreducible blocks (gauge
   coordinates) and the exact block-diagonal matrices `ideal(g)` of the named irreps;
2. the *snapped* representation `rho~(g) = T ideal(g) T⁻¹`, the exact representation closest in
   the analysis' own basis, and the snapped token matrices put back into the hidden space with the
   learned token scales (`representations.subspace_action_to_hidden`: the model's own matrices stay
   on the directions the subspace leaves out);
3. the relative distance between learned and snapped token matrices (what was moved), and the
   final-step accuracy of the model's own start state, normalization and readout driven by the
   learned and by the snapped matrices, at lengths up to far beyond training.

If the snapped model keeps the accuracy at length 500 and holds at lengths where the learned one
fails, the named representation is the mechanism and the ~1e-2 deviation is what limits length
generalisation.

The dynamics are run in numpy (float64) with the model's readout ``logits = h_t @ W_U``;
`matrices_accuracy` on the learned matrices matches `workbench.training.evaluate` (tested).

Shapes: V tokens, H hidden size, r subspace dimension, N sequences.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analyses._result import Result
from analyses._core import model_transitions, normalized_step

__all__ = ["SnappedResult", "snapped_representation", "matrices_accuracy", "snap_transitions"]


def snapped_representation(result, irreps) -> np.ndarray:
    """`T ideal(g) T⁻¹` [order, r, r] (gauge coordinates): the exact representation nearest `result`.

    Parameters
    ----------
    result : RepresentationResult with a block-diagonal form (`change_of_basis` not None).
    irreps : the group's irreps, the list the result was computed with.

    Raises
    ------
    ValueError
        If the analysis found no block-diagonal basis, or the snapped matrices are complex (a
        complex block form with no real counterpart).
    """
    from analyses.groups.representations import block_diagonalize, conjugate_irrep_index

    if result.change_of_basis is None:
        raise ValueError("the representation analysis found no block-diagonal basis "
                         f"(multiplicities {result.multiplicities.tolist()}, notes: {result.notes}); nothing to snap to")
    T, _, ideal = block_diagonalize(result.element_matrices, irreps, result.multiplicities, result.irrep_names,
                                    result.frobenius_schur, conjugate_irrep_index(irreps))
    snapped = T[None] @ ideal @ np.linalg.inv(T)[None]
    if np.iscomplexobj(snapped):
        if np.abs(snapped.imag).max() > 1e-8 * max(np.abs(snapped).max(), 1e-300):
            raise ValueError("the snapped representation is complex in the real hidden space (a complex "
                             "block form); it cannot be put back into the model")
        snapped = snapped.real
    return snapped


def matrices_accuracy(A, h0, W_U, task, lengths, n_sequences: int = 128, seed: int = 0) -> dict[int, float]:
    """Final-step accuracy of `h_t = A_{x_t} h_{t-1} / ||.||`, `logits = h_t @ W_U`, per length.

    Parameters
    ----------
    A : float array [V, H, H]; h0 : [H]; W_U : [H, C]
    task : its test sets (`task.eval_set(length, n_sequences, seed)`).
    lengths : iterable of int (moved to `task.valid_length`; keys stay as asked).
    """
    A = np.asarray(A, dtype=np.float64)
    W_U = np.asarray(W_U, dtype=np.float64)
    h0 = np.asarray(h0, dtype=np.float64).reshape(-1)
    if A.ndim != 3 or A.shape[1] != A.shape[2] or h0.shape != (A.shape[1],) or W_U.shape[0] != A.shape[1]:
        raise ValueError(f"need A [V, H, H], h0 [H], W_U [H, C]; got {A.shape}, {h0.shape}, {W_U.shape}")
    out = {}
    for L in lengths:
        L = int(L)
        if L < 1:
            raise ValueError(f"lengths must be positive, got {L}")
        batch = task.eval_set(task.valid_length(L), n_sequences, seed)
        tokens = batch.tokens.numpy()
        h = np.tile(h0, (tokens.shape[0], 1))
        for t in range(tokens.shape[1]):
            h = normalized_step(A, tokens[:, t], h)
        pred = (h @ W_U).argmax(-1)
        out[L] = float((pred == batch.labels[:, -1].numpy()).mean())
    return out


@dataclass(repr=False)
class SnappedResult(Result):
    """Learned against snapped-to-exact transitions: what moved, and what it does to accuracy."""

    irreps: str                        # the named decomposition, e.g. "2a"
    token_distance: np.ndarray         # [V] ||B_v - B~_v||_F / ||B~_v||_F in gauge coordinates
    max_token_distance: float
    snapped_homomorphism_error: float  # of the snapped element matrices (rounding level)
    accuracy_learned: dict[int, float]
    accuracy_snapped: dict[int, float]
    snapped_matrices: np.ndarray = field(repr=False)   # [V, H, H], ready for `hook_transition`
    n_sequences: int = 128

    def sentence(self) -> str:
        def accs(d):
            return ", ".join(f"{d[L]:.2f} at {L:,}" for L in sorted(d))
        return (f"snapping the transitions to the exact {self.irreps} moves each token by at most "
                f"{self.max_token_distance:.1e} (relative); accuracy learned: {accs(self.accuracy_learned)}; "
                f"snapped: {accs(self.accuracy_snapped)}")

    def summary(self) -> dict:
        """JSON-safe summary (the ``snapped`` column of the zoo audit)."""
        return {"irreps": self.irreps, "max_token_distance": float(self.max_token_distance),
                "snapped_homomorphism_error": float(self.snapped_homomorphism_error),
                "accuracy_learned": {str(k): v for k, v in self.accuracy_learned.items()},
                "accuracy_snapped": {str(k): v for k, v in self.accuracy_snapped.items()},
                "n_sequences": int(self.n_sequences), "summary": self.sentence()}

    def plot(self, ax=None):
        from analyses.plot.representations import plot_snapping

        return plot_snapping(self, ax=ax)


def snap_transitions(model, task, lengths=(500, 2000, 5000), n_sequences: int = 128, seed: int = 0,
             rep=None) -> SnappedResult:
    """Snap a bilinear model's learned representation to exact and compare accuracies (module doc).

    Parameters
    ----------
    model : bilinear model with `transition_matrices()`, `h0` and a readout `W_U` (not positive_diag).
    task : a group task (as for `recover_representation`).
    lengths : test lengths (final-step accuracy, test-set seed ``seed``).
    rep : a `RepresentationResult` of this model, or None (computed).
    """
    from analyses.groups.representations import (
        cayley_bfs, element_matrices, homomorphism_errors, recover_representation,
        subspace_action_to_hidden, task_group_data,
    )

    if getattr(getattr(model, "cfg", None), "variant", None) == "positive_diag" or not hasattr(model, "W_U"):
        raise ValueError("snap_transitions needs a bilinear model with a linear readout W_U (not positive_diag or a baseline)")
    group, token_elements = task_group_data(task)
    rep = rep if rep is not None else recover_representation(model, task)
    A, h0 = model_transitions(model, linear=True)
    snapped = snapped_representation(rep, group.irreps())
    inner = snapped[token_elements]                                   # [V, r, r] gauge coordinates
    learned = rep.gauge[None] @ rep.token_matrices @ np.linalg.inv(rep.gauge)[None]
    dist = np.linalg.norm(learned - inner, axis=(1, 2)) / np.maximum(np.linalg.norm(inner, axis=(1, 2)), 1e-300)
    # The snapped element matrices through the BFS words must be a representation (a check: the
    # products of exact matrices stay exact).
    parent, ptok, order = cayley_bfs(group.table, token_elements)
    rho = element_matrices(inner, parent, ptok, order)
    edge, prod, _ = homomorphism_errors(rho, inner, group.table, token_elements)
    A_snapped = subspace_action_to_hidden(rep, inner, A)
    import torch

    with torch.no_grad():
        W_U = model.W_U.detach().double().cpu().numpy()
    h0n = h0 / np.linalg.norm(h0)
    acc_l = matrices_accuracy(A, h0n, W_U, task, lengths, n_sequences, seed)
    acc_s = matrices_accuracy(A_snapped, h0n, W_U, task, lengths, n_sequences, seed)
    names = [f"{m}×{n}" if m > 1 else n for n, m in zip(rep.irrep_names, rep.multiplicities, strict=True) if m > 0]
    return SnappedResult(irreps=" ⊕ ".join(names), token_distance=dist, max_token_distance=float(dist.max()),
                           snapped_homomorphism_error=float(max(edge, prod)), accuracy_learned=acc_l,
                           accuracy_snapped=acc_s, snapped_matrices=A_snapped, n_sequences=int(n_sequences))
