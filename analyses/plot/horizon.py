"""Plot for analyses.reporting.long_horizon: accuracy at the longest length against the
homomorphism error, one point per model; draws on ``ax`` (a new figure when None), returns the figure."""
from __future__ import annotations


def plot_horizon(res, ax=None):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
    else:
        fig = ax.figure
    L = max(res.lengths)
    pts = [(r.homomorphism_error, r.accuracy.get(L)) for r in res.rows
           if r.homomorphism_error is not None and r.accuracy.get(L) is not None]
    if pts:
        ax.scatter([max(p[0], 1e-12) for p in pts], [p[1] for p in pts], s=14)
        ax.set_xscale("log")
    ax.axhline(res.threshold, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("homomorphism error (persistent subspace)")
    ax.set_ylabel(f"accuracy at length {L:,}")
    return fig
