"""Training objectives beyond plain cross-entropy, all of which keep the model bilinear.

The recipe options that change the loss (``TrainConfig.label_smoothing``,
``TrainConfig.collapse_weight``) are computed here, from the model's logits and its states
(``blocks.0.hook_out``); :func:`recipe_loss` is the one place the training loop asks for a loss.

Why a collapse objective: a recurrence that is linear in the state keeps every error along the
directions that separate states unless the learned maps contract them (Chung, Choi & Kim 2026).
Cross-entropy on lengths <= 10 stops caring once the margins are large, so the states that mean
the same automaton state stay a *cloud*, and the cloud's spread grows with length until it
crosses the gap between states. If the clouds were points at every training length, the token
maps would send point to point exactly, and the model would be right at every length. The
collapse term measures the spread directly: the share of the variance of the unit-normalised
states that lies *within* the groups of equal label, ``within / total`` in [0, 1], over every
step of the batch. Grouping by label is right only where labels name the automaton state
(:func:`labels_name_states`); where they do not (modular arithmetic: equal values, different
pending products) ``collapse_target="states"`` groups by the automaton states the task's sampler
returns with every batch, which is supervision beyond the labels and is named as such.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Groups with fewer members than this in a batch do not enter the within-group spread.
MIN_GROUP = 2


def labels_name_states(task) -> bool:
    """True when the label after a prefix determines the automaton state (the output map is
    injective on the reachable states): then states with equal labels must be equal."""
    import numpy as np

    A = task.automaton
    reach = A.reachable()                                   # state ids, BFS order
    return len(np.unique(np.asarray(A.outputs)[reach])) == len(reach)


def collapse_ratio(states: torch.Tensor, groups: torch.Tensor, mask: torch.Tensor | None = None,
                   eps: float = 1e-12) -> torch.Tensor:
    """Share of the variance of unit-normalised states that lies within groups.

    Parameters
    ----------
    states : [B, T, H] (any scale: each state is divided by its norm first, since a bilinear
        model's predictions do not depend on it).
    groups : [B, T] int, the group (label) of each state.
    mask : [B, T] bool, the states that count (default all).

    Returns
    -------
    Scalar tensor in [0, 1]: ``sum_i |s_i - mu_{g(i)}|^2 / sum_i |s_i - mu|^2`` over the counted
    states whose group has at least :data:`MIN_GROUP` members. 0 = every group is one point.
    """
    s = F.normalize(states.reshape(-1, states.shape[-1]), dim=-1)
    g = groups.reshape(-1)
    if mask is not None:
        keep = mask.reshape(-1)
        s, g = s[keep], g[keep]
    if s.shape[0] < 2:
        return s.sum() * 0.0
    n_groups = int(g.max()) + 1
    counts = torch.bincount(g, minlength=n_groups).to(s.dtype)
    sums = torch.zeros(n_groups, s.shape[1], dtype=s.dtype, device=s.device).index_add_(0, g, s)
    mu_g = sums / counts.clamp(min=1)[:, None]
    counted = counts[g] >= MIN_GROUP
    within = ((s - mu_g[g]) ** 2).sum(-1)[counted].sum()
    total = ((s - s.mean(0)) ** 2).sum(-1)[counted].sum()
    return within / (total + eps)


def collapse_gap_ratio(states: torch.Tensor, groups: torch.Tensor, mask: torch.Tensor | None = None,
                       eps: float = 1e-4) -> torch.Tensor:
    """Within-group spread against the gap to the nearest other group, averaged over groups.

    For each group g present in the batch: ``(w_g + eps) / (w_g + d_g + eps)`` with ``w_g`` the
    mean squared distance of its unit-normalised states to their centroid and ``d_g`` the squared
    distance from its centroid to the nearest other group's (Chung, Choi & Kim's failure criterion:
    spread against gap). In [0, 1]; 1 when two groups sit on one point (merging is penalised, where
    :func:`collapse_ratio` scores a merge of two groups into one point as perfect), ~0 when every
    group is a point far from the others. Shapes as :func:`collapse_ratio`.
    """
    s = F.normalize(states.reshape(-1, states.shape[-1]), dim=-1)
    g = groups.reshape(-1)
    if mask is not None:
        keep = mask.reshape(-1)
        s, g = s[keep], g[keep]
    present, g = torch.unique(g, return_inverse=True)
    k = present.numel()
    if k < 2:
        return s.sum() * 0.0
    counts = torch.bincount(g, minlength=k).to(s.dtype)
    mu = torch.zeros(k, s.shape[1], dtype=s.dtype, device=s.device).index_add_(0, g, s) / counts[:, None]
    w = torch.zeros(k, dtype=s.dtype, device=s.device).index_add_(0, g, ((s - mu[g]) ** 2).sum(-1)) / counts
    d = torch.cdist(mu, mu) ** 2 + torch.eye(k, dtype=s.dtype, device=s.device) * 1e9
    gap = d.min(dim=1).values
    return ((w + eps) / (w + gap + eps)).mean()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mode: str, label_smoothing: float = 0.0,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """The task loss: ``"final"`` (last step) or ``"per_step"`` (every step, ``mask`` True ones)."""
    if mode == "final":
        return F.cross_entropy(logits[:, -1], labels[:, -1], label_smoothing=label_smoothing)
    if mode != "per_step":
        raise ValueError(f"loss must be 'final' or 'per_step', got {mode!r}")
    if mask is not None:
        return F.cross_entropy(logits[mask], labels[mask], label_smoothing=label_smoothing)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           label_smoothing=label_smoothing)


def collapse_weight_at(step: int | None, cfg) -> float:
    """The collapse weight at ``step``: ramped linearly from 0 over ``collapse_warmup`` of the steps."""
    if step is None or cfg.collapse_warmup <= 0:
        return cfg.collapse_weight
    return cfg.collapse_weight * min(1.0, step / (cfg.collapse_warmup * cfg.steps))


def recipe_loss(model, batch, cfg, task,
                h_start: torch.Tensor | None = None, carried: torch.Tensor | None = None,
                want_final: bool = False, step: int | None = None):
    """Loss of one training batch under the recipe options of ``cfg``.

    Parameters
    ----------
    batch : a ``Batch`` (tokens, labels and automaton states, [B, T] each).
    cfg : TrainConfig (``loss``, ``label_smoothing``, ``collapse_weight``, ``collapse_target``).
    task : the Task (its ``scored_steps`` say which steps are whole inputs).
    h_start : [B, H] or None. Start states for the rows in ``carried`` (state passing); the other
        rows start from the model's learned ``h0``.
    carried : [B] bool or None.
    want_final : also return the final states (state passing needs them even before it carries).
    step : the training step (for the collapse weight's warm-up ramp).

    Returns
    -------
    (loss, logits [B, T, C], final_states [B, H] detached or None). The states are only
    captured (through ``blocks.0.hook_out``, which keeps the fast path) when something needs them.
    """
    tokens, labels = batch.tokens, batch.labels
    need_states = cfg.collapse_weight > 0 or h_start is not None or want_final
    if not need_states:
        logits = model(tokens)
        return cross_entropy(logits, labels, cfg.loss, cfg.label_smoothing), logits, None
    grabbed = {}

    def grab(x, hook):
        grabbed["states"] = x

    def set_start(h0, hook):
        return torch.where(carried[:, None], h_start.to(h0.dtype), h0)

    hooks = [("blocks.0.hook_out", grab)]
    if h_start is not None:
        hooks.append(("blocks.0.hook_h0", set_start))
    with model.hooks(fwd_hooks=hooks):
        logits = model(tokens)
    states = grabbed["states"]
    loss = cross_entropy(logits, labels, cfg.loss, cfg.label_smoothing)
    if cfg.collapse_weight > 0:
        scored = task.scored_steps(tokens.shape[1]).to(tokens.device)
        mask = scored[None, :].expand_as(labels)
        groups = labels if cfg.collapse_target == "labels" else batch.states
        term = collapse_gap_ratio if cfg.collapse_form == "gap" else collapse_ratio
        loss = loss + collapse_weight_at(step, cfg) * term(states, groups, mask)
    return loss, logits, states[:, -1].detach()
