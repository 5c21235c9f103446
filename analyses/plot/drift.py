"""Plot for analyses.drift: distance of the states from their short-length positions against step.

Takes a `DriftResult`, draws on ``ax`` (a new figure when None) and returns the figure; no
arithmetic beyond evaluating the result's own fit for the dashed line.
"""
from __future__ import annotations

import math

import numpy as np


def plot_drift(res, ax=None, title: str | None = None):
    """Log-log: mean / 95th percentile / max distance per checkpoint, the fit, the margin."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
    else:
        fig = ax.figure
    t = res.steps.astype(float)
    for y, lab, st in ((res.mean_distance, "mean", "o-"), (res.p95_distance, "95th percentile", "s-"),
                       (res.max_distance, "max", "^:")):
        ax.plot(t, np.maximum(y, 1e-16), st, ms=4, label=lab)
    if math.isfinite(res.margin):
        ax.axhline(res.margin, color="k", lw=1, ls="--", label=f"margin {res.margin:.2g}")
    if res.grows:
        tt = np.geomspace(t[0], max(t[-1], res.predicted_break_length), 50)
        ax.plot(tt, res.coefficient * tt ** res.exponent, color="0.5", lw=1,
                label=f"fit ~ t^{res.exponent:.2f}")
        ax.axvline(res.predicted_break_length, color="C3", lw=1, ls=":",
                   label=f"predicted break ~{res.predicted_break_length:,.0f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel(r"$\|h_t - c_{q_t}\|$ (unit states)")
    ax.set_title(title or "state drift from the short-length positions")
    ax.legend(fontsize=8)
    return fig
