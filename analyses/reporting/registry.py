"""The one registry of analyses: name -> (summarize, applies), read by `analyze --json`, the zoo
audit and the report, so that the three agree on which analysis runs on which model.

An analysis that does not apply is left out, never faked: a baseline has no transition matrices,
an affine update has no linear representation, a non-group task has no group to represent.
``positive_diag`` stacks layers, so its first layer's states are not the output's: no drift.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from workbench.variants import BILINEAR_VARIANTS, is_linear


def _bilinear(model, task) -> bool:
    return model.cfg.variant in BILINEAR_VARIANTS


def _linear(model, task) -> bool:
    return is_linear(model.cfg.variant, model.cfg.additive)


def _linear_group(model, task) -> bool:
    return _linear(model, task) and task.group is not None


def _always(model, task) -> bool:
    return True


@dataclass(frozen=True)
class Analysis:
    """One entry: ``summarize(model, task) -> dict`` is its `analyze --json` value."""

    name: str
    module: str                                  # imported on use: keeps `import analyses` light
    applies: Callable[[object, object], bool]

    @property
    def summarize(self) -> Callable:
        import importlib

        return importlib.import_module(self.module).summarize


ANALYSES: dict[str, Analysis] = {a.name: a for a in (
    Analysis("automaton", "analyses.automata_extraction", _always),
    Analysis("spectra", "analyses.spectral", _bilinear),
    Analysis("drift", "analyses.drift", _linear),
    Analysis("representation", "analyses.groups.representations", _linear_group),
    Analysis("comparison", "analyses.groups.comparison", _linear_group),
)}


def applicable(model, task) -> dict[str, Callable]:
    """Analysis name -> summarize function, for those that apply to this model and task."""
    return {name: a.summarize for name, a in ANALYSES.items() if a.applies(model, task)}
