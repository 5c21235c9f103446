"""The anchor phase: one point per automaton state, held along long rollouts.

A model that solves length 500 usually keeps each automaton state as a small *cloud* of hidden
states, and a linear recurrence cannot shrink a cloud in the directions that separate states
when its token maps are invertible (groups): the spread grows with length until it crosses the
gap between states (Chung, Choi & Kim 2026). The collapse objective shrinks the clouds at the
training lengths (<= 10), which is not enough for 10,000 steps. The anchor phase asks for more:

* **anchors**: the model's own state for each reachable automaton state, reached from ``h0`` by
  one shortest word (breadth first over the automaton, one token at a time, differentiable), so
  every state has exactly one point the model can be right or wrong about;
* **loss**: on rollouts of ``anchor_length`` steps from ``h0``, the per-step cross-entropy plus
  ``anchor_weight`` x the mean squared distance between each unit-normalised state and the
  anchor of its automaton state, divided by the smallest squared distance between two anchors
  (so merging two anchors is never a way out). A model whose states sit on their anchors at
  every step of a long rollout sends anchor to anchor exactly *and* keeps every off-anchor
  error from growing, which is what length 10,000 needs.

The anchors come from the automaton's transition table, which for the tasks whose labels name
the states (groups, cyclic, parity) is read off the labels; elsewhere it is supervision beyond
the labels, as ``collapse_target="states"`` is. Training lengths of ``anchor_length`` leave the
paper's protocol, so recipes that use the phase are extended ones (:mod:`workbench.recipes`).
Measured effect: docs/recipes.md.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F


def anchor_tree(automaton) -> tuple[list[int], list[tuple[int, int] | None]]:
    """Breadth-first tree of the reachable states.

    Returns
    -------
    (order, parent): ``order`` lists the reachable state ids, start first, by depth;
    ``parent[i]`` is ``(index in order of the parent, token)`` for ``order[i]``, None for the start.
    """
    tr = np.asarray(automaton.transitions)
    index = {automaton.start: 0}
    order, parent = [automaton.start], [None]
    queue = deque([automaton.start])
    while queue:
        q = queue.popleft()
        for a in range(tr.shape[1]):
            nxt = int(tr[q, a])
            if nxt not in index:
                index[nxt] = len(order)
                order.append(nxt)
                parent.append((index[q], a))
                queue.append(nxt)
    return order, parent


def _step_from(model, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Unit-normalised state after one token from each of ``states`` [N, H] (tokens [N])."""
    grabbed = {}

    def start(h0, hook):
        return states.to(h0.dtype)

    def grab(x, hook):
        grabbed["out"] = x

    with model.hooks(fwd_hooks=[("blocks.0.hook_h0", start), ("blocks.0.hook_out", grab)]):
        model(tokens[:, None], return_type=None)
    return F.normalize(grabbed["out"][:, 0], dim=-1)


def _h0(model) -> torch.Tensor:
    """The model's start state [H] (through ``blocks.0.hook_h0``, so it stays differentiable)."""
    grabbed = {}

    def grab(h0, hook):
        grabbed["h0"] = h0

    with model.hooks(fwd_hooks=[("blocks.0.hook_h0", grab)]):
        model(torch.zeros(1, 1, dtype=torch.long, device=model.W_U.device), return_type=None)
    return grabbed["h0"][0]


def anchor_points(model, automaton, tree=None) -> torch.Tensor:
    """The anchors: [n_states, H], unit norm; rows of unreachable states are zero.

    Row ``q`` is the model's state after the shortest word (breadth-first, lowest tokens first)
    that takes the automaton from its start to ``q``. Differentiable in the model's parameters.
    """
    order, parent = tree or anchor_tree(automaton)
    h0 = F.normalize(_h0(model), dim=-1)
    depth = [0]
    for p in parent[1:]:
        depth.append(depth[p[0]] + 1)
    # One batched step per depth: a state's parent is always one depth up.
    by_depth: dict[int, list[int]] = {}
    for i, d in enumerate(depth[1:], start=1):
        by_depth.setdefault(d, []).append(i)
    points = [None] * len(order)
    points[0] = h0
    for d in sorted(by_depth):
        idx = by_depth[d]
        src = torch.stack([points[parent[i][0]] for i in idx])
        tok = torch.tensor([parent[i][1] for i in idx], device=h0.device)
        out = _step_from(model, src, tok)
        for j, i in enumerate(idx):
            points[i] = out[j]
    P = torch.zeros(automaton.n_states, h0.shape[-1], dtype=h0.dtype, device=h0.device)
    return P.index_copy(0, torch.tensor(order, device=h0.device), torch.stack(points))


@dataclasses.dataclass
class AnchorTerms:
    """The parts of one anchor-phase loss (floats)."""
    cross_entropy: float
    spread: float          # mean squared distance state-to-anchor / smallest squared anchor gap
    worst: float           # largest distance state-to-anchor / smallest anchor gap (not squared)


def anchor_loss(model, batch, automaton, weight: float, tree=None):
    """Loss of one rollout batch: per-step cross-entropy + ``weight`` x anchored spread.

    Parameters
    ----------
    batch : a ``Batch`` from ``task.sample`` (tokens, labels, states [B, T], every row from h0).
    automaton : the task's automaton (its states index the anchors).
    weight : the anchored spread's weight.

    Returns
    -------
    (loss tensor, AnchorTerms).
    """
    tree = tree or anchor_tree(automaton)
    P = anchor_points(model, automaton, tree)
    reach = torch.tensor(tree[0], device=P.device)
    Pr = P[reach]
    gaps = torch.cdist(Pr, Pr) ** 2 + torch.eye(len(reach), dtype=P.dtype, device=P.device) * 1e9
    gap = gaps.min().clamp(min=1e-12) if len(reach) > 1 else torch.ones((), dtype=P.dtype)
    grabbed = {}

    def grab(x, hook):
        grabbed["states"] = x

    with model.hooks(fwd_hooks=[("blocks.0.hook_out", grab)]):
        logits = model(batch.tokens)
    S = F.normalize(grabbed["states"], dim=-1)
    dist2 = ((S - P[batch.states]) ** 2).sum(-1)
    spread = dist2.mean() / gap
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1))
    terms = AnchorTerms(float(ce.detach()), float(spread.detach()),
                        float((dist2.detach().max() / gap.detach()).sqrt()))
    return ce + weight * spread, terms


def check_anchorable(task, model=None) -> None:
    """Raise ``ValueError`` unless the anchor phase applies to ``task`` (and ``model``, if given)."""
    if task.alternating is not None:
        raise ValueError(f"the anchor phase is not supported on {task.spec!r} (alternating "
                         "residue/operator tokens: a rollout is not any token sequence); accepted: "
                         "tasks with free token order")
    if model is None:
        return
    n_layers = getattr(getattr(model, "cfg", None), "n_layers", None)
    if n_layers != 1 or "blocks.0.hook_h0" not in model.hook_dict:
        raise ValueError(f"the anchor phase needs a one-layer bilinear model (it sets "
                         f"blocks.0.hook_h0), got {type(model).__name__} with n_layers={n_layers}")


def _attempt(cfg, task, model, lr: float, tree, check):
    """One anchor run at learning rate ``lr`` from the model's current weights (in place).

    ``check()`` scores the model (higher is better) every ``cfg.anchor_check_every`` steps and at
    the end; returns (best score, its weights, its step, the last AnchorTerms), the later of
    equal scores winning (more of the phase behind it).
    """
    from workbench.devices import model_device

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, foreach=True)
    gen = torch.Generator().manual_seed(cfg.seed + 104729)   # batches of its own
    device = model_device(model)
    length = task.valid_length(cfg.anchor_length)
    terms, nan_steps, best = None, 0, None

    def score(step):
        nonlocal best
        if not all(bool(torch.isfinite(p).all()) for p in params):
            return
        val = check()
        if best is None or val >= best[0]:
            best = (val, copy.deepcopy(model.state_dict()), step)

    model.train()
    for step in range(cfg.anchor_steps):
        for g in opt.param_groups:
            g["lr"] = lr * cfg.lr_final_ratio ** (step / cfg.anchor_steps)
        batch = task.sample(cfg.anchor_batch, length, gen).to(device)
        loss, terms = anchor_loss(model, batch, task.automaton, cfg.anchor_weight, tree)
        if not torch.isfinite(loss):
            nan_steps += 1
            if nan_steps > cfg.max_nan_retries:
                break
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if (step + 1) % cfg.anchor_check_every == 0 and step + 1 < cfg.anchor_steps:
            score(step + 1)
            model.train()
    score(cfg.anchor_steps)
    model.eval()
    return best, terms


def anchor_phase(cfg, task, model, validate, progress: bool = False) -> tuple[object, dict]:
    """Continue training ``model`` (in place) on the anchored objective.

    The score is every-step validation accuracy at ``cfg.anchor_val_length``
    (``cfg.long_val_sequences`` sequences). With ``cfg.anchor_skip_perfect`` the phase is skipped
    when every prediction there is already right (score 1; measured to leave horizon unclaimed at
    100,000, docs/recipes.md). Otherwise each learning rate of ``cfg.anchor_lr`` in turn runs
    ``cfg.anchor_steps`` steps from the weights before the phase (rollouts of
    ``cfg.anchor_length`` from ``h0``, ``cfg.anchor_batch`` per step; Adam without weight decay,
    the rate decaying geometrically to ``lr * cfg.lr_final_ratio``; gradients clipped at
    ``cfg.grad_clip``), scoring every ``cfg.anchor_check_every`` steps and keeping its best
    weights (a run can collapse late); the rates stop at the first that scores 1. The best
    weights overall are kept if they score at least as well as before and validation at
    ``cfg.long_val_length`` does not drop; otherwise the weights before the phase stay
    (``kept=False``). Deterministic given ``cfg.seed``; an interrupted run repeats the phase.

    ``validate(model, length) -> accuracy`` is the training loop's validation
    (:func:`workbench.training.validation_accuracy` with ``cfg.long_val_sequences`` sequences and
    ``cfg.val_mode``), passed in so this module does not import the training loop.

    Returns
    -------
    (model, record) with record = {skipped, kept, lr and step (of the kept weights, or None),
    attempts (per learning rate: lr, best, best_step, cross_entropy, spread, worst at the end),
    steps, length, batch, weight, val_length, val_before, long_val_before, val_after,
    long_val_after, train_time_s}.
    """
    check_anchorable(task, model)
    tree = anchor_tree(task.automaton)

    def check():
        return validate(model, cfg.anchor_val_length)

    def long_check():
        if cfg.long_val_length == cfg.anchor_val_length:
            return check()
        return validate(model, cfg.long_val_length)

    def num(x):
        return None if x is None or not math.isfinite(x) else x

    t0 = time.perf_counter()
    val_before, long_before = check(), long_check()
    record = {"skipped": cfg.anchor_skip_perfect and val_before >= 1.0, "kept": False, "lr": None, "step": None, "attempts": [],
              "steps": cfg.anchor_steps, "length": task.valid_length(cfg.anchor_length),
              "batch": cfg.anchor_batch, "weight": cfg.anchor_weight, "val_length": cfg.anchor_val_length,
              "val_before": val_before, "long_val_before": long_before,
              "val_after": val_before, "long_val_after": long_before}
    if not record["skipped"]:
        before = copy.deepcopy(model.state_dict())
        best = None      # (score, weights, step, lr)
        for lr in cfg.anchor_lr:
            model.load_state_dict(before)
            got, terms = _attempt(cfg, task, model, lr, tree, check)
            record["attempts"].append({"lr": lr, "best": got[0] if got else None,
                                       "best_step": got[2] if got else None,
                                       "cross_entropy": num(terms and terms.cross_entropy),
                                       "spread": num(terms and terms.spread), "worst": num(terms and terms.worst)})
            if progress:
                print(f"  {cfg.task} {cfg.variant} s{cfg.seed} anchor lr={lr:g}: validation at "
                      f"{cfg.anchor_val_length:,} {val_before:.4f} -> best {got[0] if got else float('nan'):.4f}",
                      flush=True)
            if got is not None and (best is None or got[0] > best[0]):
                best = (*got, lr)
            if best is not None and best[0] >= 1.0:
                break
        model.load_state_dict(before)
        if best is not None and best[0] >= val_before:
            model.load_state_dict(best[1])
            long_after = long_check()
            if long_after >= long_before:
                record.update(kept=True, lr=best[3], step=best[2], val_after=best[0], long_val_after=long_after)
            else:
                model.load_state_dict(before)
    model.eval()
    record["train_time_s"] = time.perf_counter() - t0
    return model, record
