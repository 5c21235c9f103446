"""The result protocol every analysis result follows.

``summary() -> dict`` (JSON-safe: its ``analyze --json`` key), ``sentence() -> str`` (the finding
in words, no new arithmetic), ``plot(ax=None)`` (draws through ``analyses.plot``) and a short
``repr``: results hold arrays of any size, and a repr that dumps them buries the numbers a reader
wants. Subclasses are ``@dataclass(repr=False)`` so that this ``__repr__`` is the one used.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

REPR_LIMIT = 480


def _short(value) -> str:
    if isinstance(value, np.ndarray):
        return f"array{tuple(value.shape)}"
    if isinstance(value, (bool, np.bool_)) or value is None:
        return repr(bool(value)) if value is not None else "None"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(value, complex):
        return f"{value:.3g}"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, (list, tuple, dict, set)):
        return f"<{type(value).__name__} of {len(value)}>"
    return f"<{type(value).__name__}>"


class Result:
    """Base of the result dataclasses: the short ``repr`` (scalars shown, arrays by shape)."""

    def summary(self) -> dict:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def sentence(self) -> str:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def plot(self, ax=None):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            if f.repr:
                parts.append(f"{f.name}={_short(getattr(self, f.name))}")
        text = f"{type(self).__name__}(" + ", ".join(parts) + ")"
        return text if len(text) <= REPR_LIMIT else text[:REPR_LIMIT - 4] + " ...)"


def format_number(x) -> str:
    """A number for a sentence: 3 significant digits, scientific when tiny or huge, ∞, — for None."""
    if x is None:
        return "—"
    x = float(x)
    if math.isinf(x):
        return "∞"
    if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e4):
        return f"{x:.1e}"
    return f"{x:.3g}"


def new_axes(ax=None, figsize=(5, 3.5)):
    """``ax`` or a fresh one (imports matplotlib only when drawing)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)[1]
