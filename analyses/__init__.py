"""The analyses of the workbench: what a researcher imports.

    from analyses import recover_representation, spectra, state_drift, extract_automaton

Every name below returns a result dataclass with ``summary()`` (its `analyze --json` value),
``sentence()``, ``plot(ax=None)`` and a short ``repr``. Names are resolved on first use, so
``import analyses`` costs nothing until an analysis is called.

Layers (see docs/internals.md): ``_core`` (model access, shared linear algebra) <- ``spectral``,
``subspaces`` <- ``drift``, ``automata_extraction``, ``probing`` <- ``attribution``, ``tensor_decomposition``,
``groups`` <- ``plot`` (drawing only) <- ``reporting`` (analyze --json, audit, report, figures).
"""
from __future__ import annotations

import importlib

#: Public name -> the module that defines it.
_API = {
    "model_transitions": "analyses._core",
    "reachable_subspace": "analyses._core",
    "spectra": "analyses.spectral",
    "SpectraResult": "analyses.spectral",
    "persistent_subspace": "analyses.subspaces",
    "PersistentSubspace": "analyses.subspaces",
    "state_drift": "analyses.drift",
    "DriftResult": "analyses.drift",
    "extract_automaton": "analyses.automata_extraction",
    "ExtractionResult": "analyses.automata_extraction",
    "probe_accuracy_by_step": "analyses.probing",
    "ProbeResult": "analyses.probing",
    "sweep_task": "analyses.probing",
    "patching_sweep": "analyses.probing",
    "PatchingResult": "analyses.probing",
    "state_transplant": "analyses.probing",
    "TransplantResult": "analyses.probing",
    "attribution_patching": "analyses.attribution",
    "attribute_task": "analyses.attribution",
    "AttributionResult": "analyses.attribution",
    "decompose_model": "analyses.tensor_decomposition",
    "DecompositionReport": "analyses.tensor_decomposition",
    "recover_representation": "analyses.groups.representations",
    "RepresentationResult": "analyses.groups.representations",
    "compare_models": "analyses.groups.comparison",
    "ComparisonResult": "analyses.groups.comparison",
    "snap_transitions": "analyses.groups.snapping",
    "SnappedResult": "analyses.groups.snapping",
    "analyze_model": "analyses.reporting.summary",
    "ANALYSES": "analyses.reporting.registry",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'analyses' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
