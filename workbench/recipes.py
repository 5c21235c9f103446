"""Named training recipes: which ``TrainConfig`` fields a preset sets, as a rule of the task.

A recipe is data: fixed field values plus, optionally, a rule of the task's automaton (its number
of states and whether its labels name its states), never of how a run did. ``recipe_config``
turns (recipe, task, variant, seed, overrides) into a ``TrainConfig`` that records the recipe's
name (``TrainConfig.recipe``, a label that stays out of the fingerprint).

Two kinds of recipe:

* **paper protocol** (``protocol="paper"``): train lengths 2-10, every sequence starts from
  ``h0``, test at length 500. ``paper`` is the workbench's default training on that protocol, the
  recipe every zoo model up to this one was made with. Other protocol-keeping recipes change only
  the objective, the schedule or the sizes;
* **extended** (``protocol="extended"``): anything that leaves the protocol: state passing
  (streams continued across batches, so the loss sees states far from ``h0``), the anchor phase
  (rollouts of 100 steps, :mod:`workbench.anchoring`).

This module imports no torch, so listing recipes stays instant. See ``docs/recipes.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

PROTOCOLS = ("paper", "extended")


@dataclass(frozen=True)
class Recipe:
    """A named preset of training-config fields.

    Attributes
    ----------
    name : the name recorded in ``TrainConfig.recipe`` and ``checkpoints/index.json``.
    protocol : ``"paper"`` (lengths 2-10 from h0) or ``"extended"``.
    fields : TrainConfig fields the recipe fixes.
    rule : optional ``rule(task) -> dict`` of fields that follow from the task's automaton
        (``task.automaton.n_states``, :func:`workbench.objectives.labels_name_states`).
    description : one line for ``docs/recipes.md`` and ``experiment recipes``.
    """
    name: str
    protocol: str
    fields: dict = field(default_factory=dict)
    rule: Callable | None = None
    description: str = ""

    def fields_for(self, task) -> dict:
        """The fields this recipe sets on ``task`` (fixed fields, then the rule's)."""
        out = dict(self.fields)
        if self.rule is not None:
            out.update(self.rule(task))
        return out


def _collapse_gap_rule(task) -> dict:
    """As :func:`_collapse_rule`, with the gap form of the collapse term."""
    return {**_collapse_rule(task), "collapse_form": "gap"}


def _collapse_rule(task) -> dict:
    """The state-collapse objective, grouping states by label where the labels name the
    automaton states, else by the automaton states the task's sampler returns (modular
    arithmetic: equal values, different pending products)."""
    from workbench.objectives import labels_name_states

    return {"collapse_weight": 1.0, "collapse_target": "labels" if labels_name_states(task) else "states"}


#: The anchor phase's settings in the ``anchor`` recipe (the ones measured in docs/recipes.md).
ANCHOR_FIELDS = {"anchor_steps": 1500, "anchor_length": 100, "anchor_batch": 32, "anchor_lr": (1e-3, 3e-4, 1e-2),
                 "anchor_weight": 1000.0, "anchor_val_length": 10_000, "anchor_check_every": 250,
                 "anchor_skip_perfect": False}
# All but anchor_steps equal the TrainConfig defaults; naming them keeps the zoo's run options, and
# so its fingerprints, where they are if a default moves.

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("paper", "paper", {"train_lengths": (2, 10)},
           description="the paper's protocol (lengths 2-10, every sequence from h0) with the "
                       "workbench's default training: the recipe of the zoo before recipes existed"),
    Recipe("collapse", "paper", {"train_lengths": (2, 10)}, _collapse_rule,
           description="paper protocol + the state-collapse objective (weight 1), grouping by "
                       "label where labels name the automaton states, else by automaton state"),
    Recipe("collapse_gap", "paper", {"train_lengths": (2, 10)}, _collapse_gap_rule,
           description="paper protocol + the gap form of the state-collapse objective (within-state "
                       "spread against the gap to the nearest other state; penalises merged states)"),
    Recipe("stream", "extended", {"train_lengths": (2, 10), "state_passing": 0.98,
                                  "state_passing_warmup": 0.3},
           description="extended: 98% of the streams carried across batches after a 30% warm-up "
                       "(truncated backpropagation through one long stream)"),
    Recipe("stream_collapse", "extended", {"train_lengths": (2, 10), "state_passing": 0.98,
                                           "state_passing_warmup": 0.3}, _collapse_gap_rule,
           description="extended: state passing as `stream` plus the gap form of the collapse "
                       "objective (`collapse_gap`)"),
    Recipe("anchor", "extended", {"train_lengths": (2, 10), "long_val_length": 10_000,
                                  "long_val_sequences": 64, **ANCHOR_FIELDS}, _collapse_gap_rule,
           description="extended: `horizon`, then the anchor phase (workbench.anchoring): "
                       f"{ANCHOR_FIELDS['anchor_steps']:,} steps on rollouts of "
                       f"{ANCHOR_FIELDS['anchor_length']} from h0 that pull each state onto one "
                       "point per automaton state, kept only if validation at 10,000 does not drop"),
    Recipe("horizon", "extended", {"train_lengths": (2, 10), "long_val_length": 10_000,
                                   "long_val_sequences": 64}, _collapse_gap_rule,
           description="extended: `collapse_gap` with its long validation (early stop, and the "
                       "choice among the learning-rate / weight-decay runs) at length 10,000 "
                       "instead of 1,000; training data as the paper's"),
)}


#: The recipe ``python -m workbench train`` uses when ``--recipe`` is not given.
DEFAULT_RECIPE = "collapse_gap"


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; accepted: {', '.join(RECIPES)}")
    return RECIPES[name]


def recipe_config(recipe: str, task: str, variant: str = "full", seed: int = 0, **overrides):
    """``TrainConfig`` of ``recipe`` on ``task``; ``overrides`` win over the recipe's fields.

    An override that breaks the recipe's protocol (train lengths other than 2-10, or state
    passing on a paper-protocol recipe) is refused: name it as another recipe instead.
    """
    from workbench.tasks import make_task
    from workbench.training import TrainConfig

    r = get_recipe(recipe)
    fields = {**r.fields_for(make_task(task)), **overrides}
    cfg = TrainConfig(task=task, variant=variant, seed=seed, recipe=r.name, **fields)
    check_protocol(cfg, r)
    return cfg


def check_protocol(cfg, recipe: Recipe) -> None:
    """Raise ``ValueError`` if ``cfg`` leaves ``recipe``'s protocol."""
    if recipe.protocol != "paper":
        return
    if tuple(cfg.train_lengths) != (2, 10) or cfg.state_passing > 0 or cfg.anchor_steps > 0:
        raise ValueError(f"recipe {recipe.name!r} keeps the paper's protocol (train_lengths (2, 10), "
                         f"no state passing, no anchor phase); got train_lengths "
                         f"{tuple(cfg.train_lengths)}, state_passing {cfg.state_passing} and "
                         f"anchor_steps {cfg.anchor_steps}")


def recipe_name_of(training: dict) -> str:
    """The recipe a stored training config (``config.json["training"]``) was made with.

    Configs that record ``recipe`` give it. Older ones (written before recipes had names) are
    ``"paper"`` when they are on the paper's protocol with none of the recipe options on (that
    was the workbench's only training then), else ``"custom"``.
    """
    if training.get("recipe"):
        return str(training["recipe"])
    if "construction" in training:       # hand-built weights (workbench.constructions), not trained
        return "construction"
    on_protocol = list(training.get("train_lengths", [2, 10])) == [2, 10]
    options_off = all(training.get(k, 0) in (0, 0.0, None) for k in
                      ("label_smoothing", "collapse_weight", "length_curriculum", "state_passing"))
    return "paper" if on_protocol and options_off else "custom"
