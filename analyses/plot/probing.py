"""Plots for analyses.probing: probe accuracy against step, patching heatmaps, transplant curves."""

from __future__ import annotations


def plot_probe_accuracy(res, ax=None, chance=None):
    """Probe accuracy at each step; the shaded region is inside the probe's training lengths."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5)) if ax is None else (ax.figure, ax)
    ax.axvspan(0.5, res.train_length + 0.5, color="0.92", label="probe training steps")
    ax.plot(res.steps, res.accuracy, lw=1.2, label=f"probe ({res.target})")
    if chance is not None:
        ax.axhline(chance, color="0.5", ls=":", label="chance")
    ax.set_xlabel("step")
    ax.set_ylabel("probe accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    return fig


def plot_patching(res, ax=None, kind="recovery"):
    """One line per site with its bootstrap band: recovered fraction (or accuracy) against step.

    Parameters
    ----------
    kind : "recovery" (logit-difference recovery) or "accuracy" (fraction predicting the clean label)
    """
    import matplotlib.pyplot as plt

    if kind not in ("recovery", "accuracy"):
        raise ValueError(f"kind must be 'recovery' or 'accuracy'; got {kind!r}")
    val = res.recovery if kind == "recovery" else res.accuracy
    ci = res.recovery_ci if kind == "recovery" else res.accuracy_ci
    fig, ax = plt.subplots(figsize=(7, 3.5)) if ax is None else (ax.figure, ax)
    for i, site in enumerate(res.sites):
        ax.plot(res.steps, val[i], lw=1.2, label=site)
        ax.fill_between(res.steps, ci[i, :, 0], ci[i, :, 1], alpha=0.25)
    ax.set_xlabel("patched step")
    ax.set_ylabel("recovered logit difference" if kind == "recovery" else "accuracy (clean label)")
    ax.set_title(f"clean -> corrupted patching, {int(100 * res.ci)}% bootstrap intervals", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def plot_patching_heatmap(res, ax=None):
    """(site x step) heatmap of the recovered fraction."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1 + 0.5 * len(res.sites))) if ax is None else (ax.figure, ax)
    im = ax.imshow(res.recovery, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                   extent=(res.steps[0] - 0.5, res.steps[-1] + 0.5, len(res.sites) - 0.5, -0.5))
    ax.set_yticks(range(len(res.sites)), res.sites, fontsize=7)
    ax.set_xlabel("patched step")
    fig.colorbar(im, ax=ax, label="recovery")
    return fig


def plot_transplant(res, ax=None):
    """Fraction of predictions that follow the transplanted state, per step after the patch."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5)) if ax is None else (ax.figure, ax)
    ax.plot(res.steps, res.per_step_b, "o-", ms=3,
            label=f"follows B's state (overall {res.match_b_continued:.2f})")
    ax.axhline(res.match_a, color="C1", ls="--", label=f"follows A's own labels ({res.match_a:.2f})")
    ax.axhline(res.control_match_b_continued, color="0.5", ls=":",
               label=f"no patch ({res.control_match_b_continued:.2f})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("fraction of informative predictions")
    ax.set_title(f"h_t of B patched into A at t = {res.t_patch}", fontsize=9)
    ax.legend(fontsize=7)
    return fig
