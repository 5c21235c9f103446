"""Training batches: the length schedule and state passing across batches.

Two recipe options decide what a training batch is:

* ``TrainConfig.length_curriculum`` (fraction of the step cap, 0 = off): the upper training
  length grows linearly from the lower one to the configured upper one over that fraction of
  the steps, then stays (short-to-long ordering; the lengths stay inside ``train_lengths``, so
  the paper's protocol is kept);
* ``TrainConfig.state_passing`` (fraction of streams, 0 = off): each batch *continues* that
  fraction of its rows from the previous batch: the model starts those rows from the previous
  batch's final hidden state (detached, unit-normalised: a bilinear model's predictions do not
  depend on the scale) through the ``blocks.0.hook_h0`` hook, and the labels come from running
  the automaton on from the previous final automaton state. The other rows start from ``h0``
  and the automaton's start state. A carried row is a stream as long as training, cut into
  truncated-backpropagation windows of the training lengths (Buitrago Ruiz & Gu 2025), so the
  loss sees states thousands of steps from ``h0`` while every gradient path stays <= 10 steps.
  A carried row whose previous window ended in a wrong prediction restarts from ``h0``: in a
  group an error never heals (the hidden state then tracks another element for good), so
  carrying it would train on states that say nothing about the labels, and with 98 % of the
  rows carried that drove every group model measured to chance within a few hundred steps.
  ``TrainConfig.state_passing_warmup`` (fraction of the step cap) trains from ``h0`` only first,
  so the carried states mean something when carrying starts. This leaves the paper's protocol
  ("every sequence from h0"): recipes that use it are named as extended (:mod:`workbench.recipes`).
"""
from __future__ import annotations

import torch

from workbench.tasks.sampling import Batch


def upper_length(step: int, cfg) -> int:
    """The largest training length at ``step`` (0-based) under the length curriculum."""
    lo, hi = cfg.train_lengths
    if cfg.length_curriculum <= 0:
        return hi
    frac = min(1.0, step / max(1.0, cfg.length_curriculum * cfg.steps))
    return int(round(lo + frac * (hi - lo)))


class StreamCarrier:
    """Makes the training batches of one run and carries streams between them.

    Parameters
    ----------
    task : Task.
    cfg : TrainConfig (``batch_size``, ``train_lengths``, ``length_curriculum``,
        ``state_passing``, ``state_passing_warmup``, ``steps``).

    The carry (``h`` [B, H] float, ``q`` [B] int64 automaton states, ``ok`` [B] bool: the row's
    last prediction was right, so it may be carried) is part of the training state: :meth:`state_tensors` / :meth:`load_state_tensors`
    save and restore it with the run, so a resumed run carries on exactly.
    """

    def __init__(self, task, cfg):
        if cfg.state_passing > 0 and task.alternating is not None:
            # A carried modarith stream would continue with an operator and its windows would end
            # on one (not a whole expression): no clean window exists, so it is refused.
            raise ValueError(f"state_passing is not supported on {task.spec!r} (alternating "
                             "residue/operator tokens); accepted: tasks with free token order")
        self.task, self.cfg = task, cfg
        self.n_carry = int(round(cfg.state_passing * cfg.batch_size))
        self.h: torch.Tensor | None = None
        self.q: torch.Tensor | None = None
        self.ok: torch.Tensor | None = None

    @property
    def passing(self) -> bool:
        return self.n_carry > 0

    def carrying_at(self, step: int) -> bool:
        return self.passing and self.h is not None and step >= self.cfg.state_passing_warmup * self.cfg.steps

    def may_stop(self, step: int) -> bool:
        """Early stopping waits, under state passing, until carrying has run as many steps as the
        warm-up did: a run solved from ``h0`` alone would otherwise stop before it ever carried."""
        return not self.passing or step >= 2 * self.cfg.state_passing_warmup * self.cfg.steps

    def next_batch(self, step: int, gen: torch.Generator):
        """``(batch, h_start, carried)`` for training step ``step``.

        ``h_start`` [B, H] and ``carried`` [B] bool are None when no row is carried this step.
        """
        task, cfg = self.task, self.cfg
        lo = cfg.train_lengths[0]
        L = task.valid_length(int(torch.randint(lo, upper_length(step, cfg) + 1, (1,), generator=gen)))
        if not self.carrying_at(step):
            return task.sample(cfg.batch_size, L, gen), None, None
        B = cfg.batch_size
        tokens = task.sample_tokens(B, L, gen)
        carried = torch.zeros(B, dtype=torch.bool)
        carried[:self.n_carry] = self.ok[:self.n_carry]
        start = torch.full((B,), int(task.automaton.start), dtype=torch.int64)
        start = torch.where(carried, self.q, start)
        states = torch.from_numpy(task.automaton.run(tokens.numpy(), start=start.numpy()))
        labels = torch.from_numpy(task.automaton.outputs[states.numpy()])
        return Batch(tokens, labels, states), self.h, carried

    def update(self, batch: Batch, final_states: torch.Tensor | None,
               logits: torch.Tensor | None = None) -> None:
        """Remember the final hidden and automaton states of ``batch`` for the next one.

        ``logits`` [B, T, C]: rows whose final prediction is wrong are not carried next time
        (None: every row may be carried).
        """
        if not self.passing or final_states is None:
            return
        self.h = torch.nn.functional.normalize(final_states.detach().float(), dim=-1).clone()
        self.q = batch.states[:, -1].cpu().clone()
        if logits is None:
            self.ok = torch.ones(len(self.q), dtype=torch.bool)
        else:
            self.ok = (logits.detach()[:, -1].argmax(-1) == batch.labels[:, -1]).cpu()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.h is None:
            return {}
        return {"carry.h": self.h, "carry.q": self.q, "carry.ok": self.ok}

    def load_state_tensors(self, tensors: dict) -> None:
        if "carry.h" in tensors:
            self.h, self.q = tensors["carry.h"].clone(), tensors["carry.q"].clone()
            ok = tensors.get("carry.ok")
            self.ok = torch.ones(len(self.q), dtype=torch.bool) if ok is None else ok.clone()
