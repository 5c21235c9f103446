"""Bilinear-RNN interpretability workbench.

The heavy pieces (TransformerLens, the model family) load on first use, so that
`python -m workbench --help` and `import workbench.tasks` stay fast.
"""

__version__ = "0.1.0"

_LAZY = {
    "ModelConfig": "workbench.models",
    "build_model": "workbench.models",
    "HookedBilinearRNN": "workbench.models",
    "make_task": "workbench.tasks",
    "Task": "workbench.tasks",
    "Group": "workbench.tasks",
    "Automaton": "workbench.tasks",
    "evaluate": "workbench.training",
    "train": "workbench.training",
    "load_checkpoint": "workbench.checkpoints",
    "save_checkpoint": "workbench.checkpoints",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
