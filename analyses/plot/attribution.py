"""Plot for analyses.attribution: estimated against patched recovery per (site, step)."""
from __future__ import annotations


def plot_attribution(res, ax=None):
    """One line per site: the attribution estimate (solid) and, if compared, the activation
    patching recovery (dashed, same colour) against step."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5)) if ax is None else (ax.figure, ax)
    for i, site in enumerate(res.sites):
        line, = ax.plot(res.steps, res.estimate[i], lw=1.2, label=f"{site} (attribution)")
        if res.patching is not None:
            ax.plot(res.patching.steps, res.patching.recovery[i], ls="--", lw=1,
                    color=line.get_color(), label=f"{site} (patching)")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("recovered logit difference")
    title = "attribution patching"
    if res.spearman is not None:
        title += f" vs activation patching: Spearman {res.spearman:.2f}"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig
