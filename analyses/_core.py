"""Model access and the linear algebra the analyses share.

Every analysis that reads a bilinear model's transitions goes through :func:`model_transitions`,
so the rules (which layer of a stacked model, when the update is not linear) live in one place.
The numeric helpers here depend on nothing else in ``analyses``, which keeps the import graph a
tree: ``_core`` <- primitives (``spectra``, ``subspaces``) <- analyses <- reporting.
"""
from __future__ import annotations

import numpy as np

from workbench.variants import BASELINE_VARIANTS, BILINEAR_VARIANTS, is_linear

__all__ = ["variant_of", "model_transitions", "reachable_subspace", "normalized_step"]


# ----------------------------------------------------------------------------- model access


def variant_of(model) -> str:
    """The model's variant name (``model.cfg.variant``), or "unknown"."""
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "variant", None) or getattr(model, "variant", "unknown")


def model_transitions(model, linear: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-token transition matrices and start state of a bilinear model, float64.

    A stacked ``positive_diag`` model is read at its first layer, the one fed by ``h0``.

    Parameters
    ----------
    model : a bilinear model with ``transition_matrices()``.
    linear : bool
        Require a linear update ``h_t = A(x_t) h_{t-1}`` and a start state (what a representation
        needs): additive models and ``positive_diag`` (affine by definition) are then rejected.

    Returns
    -------
    A : array, (V, H, H)
        ``A[v]`` maps ``h_{t-1}`` to ``h_t`` when token ``v`` is read (before normalization).
    h0 : array, (H,) or None
        The start state (``model.h0``) when the model has one.

    Raises
    ------
    ValueError
        For baselines (LSTM, GRU, Elman, Transformer): they have no per-token linear transition;
        with ``linear=True`` also for affine updates and models without ``h0``.
    """
    variant = variant_of(model)
    if variant in BASELINE_VARIANTS or not hasattr(model, "transition_matrices"):
        raise ValueError(
            f"spectra need a bilinear model with transition_matrices(); got variant {variant!r}. "
            f"Accepted variants: {', '.join(BILINEAR_VARIANTS)}. Baselines have no per-token "
            "linear transition: use analyses.automata_extraction or analyses.probing instead."
        )
    if linear and not is_linear(variant, getattr(getattr(model, "cfg", None), "additive", False)):
        raise ValueError(
            f"model variant {variant!r} (additive={getattr(model.cfg, 'additive', False)}) has an affine "
            "update, not a linear representation; analyse a model without additive terms "
            "(not positive_diag)")
    import torch

    with torch.no_grad():
        A = model.transition_matrices().detach().cpu().double().numpy()
        h0 = getattr(model, "h0", None)
        if h0 is None and hasattr(model, "blocks"):  # positive_diag keeps h0 per layer
            h0 = getattr(model.blocks[0], "h0", None)
        h0 = None if h0 is None else h0.detach().cpu().double().numpy().reshape(-1)
    if A.ndim == 4:  # positive_diag with n_layers > 1: analyse the first layer (the one fed by h0)
        A = A[0]
    if A.ndim != 3 or A.shape[1] != A.shape[2]:
        raise ValueError(f"transition_matrices() returned shape {A.shape}; expected [V, H, H]")
    if linear and h0 is None:
        raise ValueError(f"model variant {variant!r} has no start state h0; a representation needs one")
    return A, h0


def reachable_subspace(A: np.ndarray, h0: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """Orthonormal basis of the smallest subspace containing ``h0`` and invariant under every ``A_v``.

    Krylov expansion: apply every ``A_v`` to every new basis vector, keep the part orthogonal to
    the basis when its norm exceeds ``rtol`` times the vector's norm (two Gram-Schmidt passes).

    Parameters
    ----------
    A : array, (V, H, H)
    h0 : array, (H,), non-zero
    rtol : float
        Relative residual below which a new direction is considered already spanned.

    Returns
    -------
    Q : array, (H, r)
        Orthonormal columns; ``r = H`` for a generic learned model.
    """
    A = np.asarray(A, dtype=np.float64)
    h0 = np.asarray(h0, dtype=np.float64).reshape(-1)
    if A.ndim != 3 or A.shape[1] != A.shape[2] or h0.shape[0] != A.shape[1]:
        raise ValueError(f"need A [V, H, H] and h0 [H]; got {A.shape} and {h0.shape}")
    norm = np.linalg.norm(h0)
    if not norm > 0:
        raise ValueError("h0 is zero: a bilinear model with a zero start state never leaves it")
    H = A.shape[1]
    basis = [h0 / norm]
    queue = [basis[0]]
    while queue and len(basis) < H:
        q = queue.pop(0)
        for w in A @ q:  # [V, H]: every token applied to q
            wn = np.linalg.norm(w)
            if wn == 0:
                continue
            Q = np.stack(basis, 1)
            r = w - Q @ (Q.T @ w)
            r = r - Q @ (Q.T @ r)
            rn = np.linalg.norm(r)
            if rn > rtol * wn:
                basis.append(r / rn)
                queue.append(basis[-1])
                if len(basis) == H:
                    break
    return np.stack(basis, 1)


def normalized_step(A: np.ndarray, tokens: np.ndarray, h: np.ndarray) -> np.ndarray:
    """One step of the normalized dynamics for a batch: ``A[tokens[n]] h[n] / ||.||``.

    A : [V, H, H]; tokens : int [N]; h : [N, H]. A state killed to 0 stays 0 (spans nothing).
    The one numpy recurrence the analyses share (late states, drift, snapped accuracy).
    """
    h = np.einsum("nij,nj->ni", A[tokens], h)
    n = np.linalg.norm(h, axis=1, keepdims=True)
    return h / np.where(n > 0, n, 1.0)


