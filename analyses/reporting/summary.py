"""One JSON-ready summary of every analysis that applies to one model: `analyze --json`.

Each analysis module owns its own `summarize(model, task) -> dict`; this module only decides
which apply and assembles the `analyze --json` object (docs/internals.md). An analysis that does not apply (a baseline has no
transition matrices, a non-group task has no representation) is left out, never faked; an
analysis that fails is reported under "errors" with its message, so one broken piece does not
hide the others.
"""

from __future__ import annotations

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


#: Accuracy in `analyze` is measured on the test sets (seed 0) at these lengths, never copied
#: from metrics.json: a config edited after training must not inherit the old numbers.
DEFAULT_ACCURACY_LENGTHS = (10, 100, 500)
DEFAULT_ACCURACY_SEQUENCES = 256


def analyze_checkpoint(path_or_name: str, lengths=DEFAULT_ACCURACY_LENGTHS,
                       n_sequences: int = DEFAULT_ACCURACY_SEQUENCES, trust_unhashed: bool = False,
                       device=None) -> dict:
    """Load a checkpoint (folder or zoo name), measure its accuracy and analyse it.

    ``accuracy`` is ``workbench.evaluate`` at ``lengths`` with ``n_sequences`` test sequences
    each (keys are the lengths as strings). ``device``: where the model runs (default: CPU, as
    loaded).
    """
    from workbench.checkpoints import load_checkpoint
    from workbench.training import evaluate

    model, task = load_checkpoint(path_or_name, trust_unhashed=trust_unhashed)
    if device is not None:
        model.to(device)
    accuracy = {str(L): a for L, a in evaluate(model, task, lengths, n_sequences, seed=0).items()}
    return analyze_model(model, task, accuracy)
