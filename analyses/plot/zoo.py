"""One function per figure: data or result objects in, a matplotlib Figure out (saving is separate).

The arithmetic lives in the analyses (``analyses.spectral``, ``analyses.groups.representations``, ...)
and in ``workbench.zoo`` (the paper's numbers, the result rows); these functions lay results out
and reuse the analyses' own plotting helpers for single panels.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "hierarchy_heatmap", "accuracy_vs_length", "unit_circle_spectra", "characters_vs_table",
    "irrep_multiplicities", "automaton_graph", "patching_map", "echo_state_parity",
    "comparison_figure",
]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, ncols: int, size: tuple[float, float]):
    plt = _plt()
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def _annotated(ax, M, row_labels, col_labels, text, cmap="viridis", vmin=0.0, vmax=1.0):
    """Heatmap with a text label per cell; NaN cells are drawn light grey with their text."""
    masked = np.ma.masked_invalid(M)
    cm = _plt().colormaps[cmap].with_extremes(bad="0.93")
    im = ax.imshow(masked, cmap=cm, vmin=vmin, vmax=vmax, aspect="auto")
    norm = im.norm
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            v = M[i, j]
            r, g, b, _ = cm(norm(v)) if np.isfinite(v) else (1, 1, 1, 1)
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5   # text colour by cell luminance
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=6.5,
                    color="white" if dark else "black")
    return im


def hierarchy_heatmap(cells: dict, paper: dict, tasks, variants, title: str = "accuracy at length 500"):
    """Our reproduction table beside the paper's, as two heatmaps of chance-normalized accuracy.

    Parameters
    ----------
    cells : {(variant_key, task): (median, best, n_seeds)}   (``Zoo.median_cells()``)
    paper : {(variant_key, task): float}                       (``workbench.zoo.PAPER_RESULTS``)
    tasks, variants : column and row order.

    Returns
    -------
    Figure with two panels [len(variants), len(tasks)]: ours (median over seeds, "median/best"
    in each cell) and the paper's (grey where the paper gives no number).
    """
    plt = _plt()
    tasks, variants = list(tasks), list(variants)
    ours = np.full((len(variants), len(tasks)), np.nan)
    theirs = np.full_like(ours, np.nan)
    t_ours = [["" for _ in tasks] for _ in variants]
    t_paper = [["" for _ in tasks] for _ in variants]
    for i, v in enumerate(variants):
        for j, t in enumerate(tasks):
            if (v, t) in cells:
                med, best, n = cells[(v, t)]
                ours[i, j] = med
                t_ours[i][j] = f"{med:.2f}" if n == 1 or abs(best - med) < 0.005 else f"{med:.2f}/{best:.2f}"
            else:
                t_ours[i][j] = "—"
            if (v, t) in paper:
                theirs[i, j] = paper[(v, t)]
                t_paper[i][j] = f"{paper[(v, t)]:.2f}"
            else:
                t_paper[i][j] = "—"
    w = 1.0 + 0.62 * len(tasks)
    fig, (a, b) = plt.subplots(1, 2, figsize=(2 * w + 1.2, 0.9 + 0.36 * len(variants)), sharey=True)
    _annotated(a, ours, variants, tasks, t_ours)
    a.set_title("this zoo: median (/best) over seeds", fontsize=9)
    im = _annotated(b, theirs, variants, tasks, t_paper)
    b.set_title("paper (Ebrahimi & Memisevic 2025)", fontsize=9)
    fig.colorbar(im, ax=[a, b], fraction=0.025, pad=0.01, label="chance-normalized accuracy")
    fig.suptitle(title, fontsize=10)
    return fig


def accuracy_vs_length(cells_by_length: dict, tasks, variants, lengths=(10, 50, 500), chance_line: bool = True):
    """Chance-normalized accuracy against test length, one panel per task, one line per variant.

    Parameters
    ----------
    cells_by_length : {length: {(variant_key, task): (median, best, n_seeds)}}
    tasks, variants : panels and lines (missing cells are skipped).
    lengths : x positions (log scale).

    Returns
    -------
    Figure; lines are the median over seeds, the band spans median..best.
    """
    tasks = list(tasks)
    fig, axes = _grid(len(tasks), 4, (3.0, 2.6))
    cmap = _plt().colormaps["tab10"]
    for ax, t in zip(axes, tasks, strict=False):  # the grid may have spare axes
        for k, v in enumerate(variants):
            pts = [(L, cells_by_length[L][(v, t)]) for L in lengths if (v, t) in cells_by_length.get(L, {})]
            if not pts:
                continue
            x = [p[0] for p in pts]
            med = [p[1][0] for p in pts]
            best = [p[1][1] for p in pts]
            ax.plot(x, med, "o-", ms=3, lw=1.2, color=cmap(k % 10), label=v)
            ax.fill_between(x, med, best, color=cmap(k % 10), alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.set_xticks(list(lengths), [str(L) for L in lengths])
        ax.minorticks_off()
        if chance_line:
            ax.axhline(0, color="0.6", lw=0.8, ls=":")
        ax.axvspan(min(lengths) * 0.8, 10, color="0.93", zorder=0)  # inside the training lengths
        ax.set_ylim(-0.1, 1.05)
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("test length", fontsize=8)
        ax.set_ylabel("normalized accuracy", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:len(tasks)]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def unit_circle_spectra(panels, token_names=None, ncols: int = 4):
    """Normalized eigenvalues of every token on the unit circle, one panel per model.

    Parameters
    ----------
    panels : list of (title, analyses.spectral.SpectraResult)
    token_names : list of str, optional (shared by the panels)
    """
    from analyses.plot.spectra import plot_unit_circle

    fig, axes = _grid(len(panels), ncols, (3.4, 3.6))
    for ax, (title, res) in zip(axes, panels, strict=False):  # the grid may have spare axes
        plot_unit_circle(res, token_names=token_names, ax=ax)
        sub = ax.get_title().replace("\n", "; ")
        ax.set_title(f"{title}\n{sub}", fontsize=8)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.tight_layout()
    return fig


def drift_panels(panels, ncols: int = 3):
    """State drift against step, one panel per model.

    Parameters
    ----------
    panels : list of (title, analyses.drift.DriftResult)
    """
    from analyses.plot.drift import plot_drift

    fig, axes = _grid(len(panels), ncols, (4.2, 3.4))
    for ax, (title, res) in zip(axes, panels, strict=False):  # the grid may have spare axes
        plot_drift(res, ax=ax, title=title)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def characters_vs_table(result):
    """Learned characters per conjugacy class against the group's character table.

    Parameters
    ----------
    result : analyses.groups.representations.RepresentationResult

    Returns
    -------
    Figure: left, ``plot_characters`` (learned χ per class, Σ m·χ_i, the irreps' χ_i in grey);
    right, the character table (rows: irreps; columns: classes) with the learned character of
    each class's first element as the last row, and the recovered multiplicity of each irrep.
    """
    from analyses.plot.representations import plot_characters

    plt = _plt()
    k = len(result.classes)
    fig, (a, b) = plt.subplots(1, 2, figsize=(6 + 0.9 * k, 3.2 + 0.25 * len(result.irrep_names)),
                               gridspec_kw={"width_ratios": [1.2, 1]})
    plot_characters(result, a)
    reps = [c[0] for c in result.classes]
    table = result.irrep_characters[:, reps]                       # [k_irreps, k_classes]
    learned = result.characters[reps][None]                        # [1, k_classes]
    M = np.concatenate([table, learned]).real
    text = [[_fmt_char(z) for z in row] for row in np.concatenate([table, learned])]
    rows = [f"{n} (m={int(m)})" for n, m in zip(result.irrep_names, result.multiplicities, strict=True)] + ["learned χ"]
    lim = max(float(np.abs(M).max()), 1.0)
    _annotated(b, M, rows, [f"C{j} ({len(c)})" for j, c in enumerate(result.classes)], text,
               cmap="RdBu_r", vmin=-lim, vmax=lim)
    b.axhline(len(result.irrep_names) - 0.5, color="black", lw=1.5)
    b.set_title(f"character table of {result.group_name} (real part; class sizes)", fontsize=9)
    fig.tight_layout()
    return fig


def _fmt_char(z) -> str:
    z = complex(z)
    if abs(z.imag) < 5e-3:
        return f"{z.real:.2f}".rstrip("0").rstrip(".") if abs(z.real) >= 5e-3 else "0"
    return f"{z.real:.2f}{z.imag:+.2f}i"


def irrep_multiplicities(panels, ncols: int = 3):
    """Raw and rounded irrep multiplicities of several models (``plot_multiplicities`` per panel).

    Parameters
    ----------
    panels : list of (title, analyses.groups.representations.RepresentationResult)
    """
    from analyses.plot.representations import plot_multiplicities

    fig, axes = _grid(len(panels), ncols, (4.2, 3.2))
    for ax, (title, res) in zip(axes, panels, strict=False):  # the grid may have spare axes
        plot_multiplicities(res, ax)
        ax.set_title(f"{title}\n{ax.get_title()}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def automaton_graph(result, task, title: str | None = None):
    """The extracted automaton as a graph beside the task's minimal automaton.

    Parameters
    ----------
    result : analyses.automata_extraction.ExtractionResult
    task : the model's Task (for the second panel and token names)
    """
    from analyses.plot.automata import plot_extracted_automaton

    fig = plot_extracted_automaton(result, task)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def patching_map(result, title: str | None = None):
    """Activation patching: (site × step) heatmap of the recovered logit difference, and the
    per-site curves with bootstrap intervals.

    Parameters
    ----------
    result : analyses.probing.PatchingResult
    """
    from analyses.plot.probing import plot_patching, plot_patching_heatmap

    plt = _plt()
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 2.2 + 0.45 * len(result.sites) + 3.0),
                               gridspec_kw={"height_ratios": [0.6 + 0.3 * len(result.sites), 3.0]})
    plot_patching_heatmap(result, a)
    plot_patching(result, b)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def echo_state_parity(experiments):
    """Frozen random real-diagonal transitions on parity, readout trained on two examples.

    Parameters
    ----------
    experiments : list of dicts from ``checkpoints/experiments/echo_parity_H*.json``
        (``workbench.zoo.EchoStateResult.to_dict()``).

    Returns
    -------
    Figure: per hidden size, the opposite-sign rate against the paper's ``1 - 2^-H`` and the
    success rates at odd and even length.
    """
    plt = _plt()
    ex = sorted(experiments, key=lambda e: e["d_hidden"])
    H = [e["d_hidden"] for e in ex]
    x = np.arange(len(ex))
    keys = [("opposite_sign_rate", "opposite-sign unit"), ("success_rate_odd", "solved, odd length"),
            ("success_rate_even", "solved, even length"), ("success_rate_both", "solved, both")]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    w = 0.8 / len(keys)
    for i, (k, lab) in enumerate(keys):
        ax.bar(x + (i - 1.5) * w, [e[k] for e in ex], w, label=lab)
    ax.plot(x, [e["predicted_rate"] for e in ex], "k_", ms=28, mew=2, label="paper: 1 − 2^−H")
    ax.set_xticks(x, [f"H={h}\n({e['n_draws']} draws)" for h, e in zip(H, ex, strict=True)])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of draws")
    ax.set_title("frozen random real diagonal on parity, readout trained on 2 examples", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def comparison_figure(result):
    """Learned against constructed (``analyses.plot.representations.plot_comparison``)."""
    from analyses.plot.representations import plot_comparison

    return plot_comparison(result)
