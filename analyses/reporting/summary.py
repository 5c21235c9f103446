"""One JSON-ready summary of every analysis that applies to one model: `analyze --json`.

Each analysis module owns its own `summarize(model, task) -> dict`; this module only decides
which apply and assembles the `analyze --json` object (docs/internals.md). An analysis that does not apply (a baseline has no
transition matrices, a non-group task has no representation) is left out, never faked; an
analysis that fails is reported under "errors" with its message, so one broken piece does not
hide the others.
"""

from __future__ import annotations

import json
from pathlib import Path

from analyses.reporting.registry import applicable


def _applicable(model, task) -> dict:
    """Analysis name -> summarize function, for those that apply to this model and task."""
    return applicable(model, task)


def analyze_model(model, task, accuracy: dict | None = None) -> dict:
    """Run every applicable analysis on one model.

    Returns the `analyze --json` object: task, variant, accuracy, and one key per analysis.
    """
    out: dict = {"task": task.spec, "variant": model.cfg.variant, "accuracy": accuracy or {}}
    errors = {}
    for key, summarize in _applicable(model, task).items():
        try:
            out[key] = summarize(model, task)
        except Exception as exc:  # reported, not swallowed: one failure must not hide the rest
            errors[key] = f"{type(exc).__name__}: {exc}"
    if errors:
        out["errors"] = errors
    return out


def analyze_checkpoint(path_or_name: str, device=None) -> dict:
    """Load a checkpoint (folder or zoo name) and analyse it; accuracy comes from metrics.json.

    ``device``: where the model runs (default: CPU, as loaded).
    """
    from workbench.checkpoints import load_checkpoint, resolve_checkpoint

    model, task = load_checkpoint(path_or_name)
    if device is not None:
        model.to(device)
    metrics_path = Path(resolve_checkpoint(path_or_name)) / "metrics.json"
    accuracy = {}
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        accuracy = metrics.get("accuracy", {})
    return analyze_model(model, task, accuracy)
