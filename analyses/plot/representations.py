"""Plots for `analyses.groups.representations` and `analyses.groups.comparison` (no arithmetic here).

Each function takes a result dataclass, draws on a given matplotlib Axes (or a new figure) and
returns the figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the plot layer never imports the analyses it draws
    from analyses.groups.comparison import ComparisonResult
    from analyses.groups.representations import RepresentationResult

__all__ = ["plot_characters", "plot_multiplicities", "plot_change_of_basis", "plot_comparison",
           "plot_representation", "plot_intertwiner", "plot_block_residuals", "plot_snapping"]


def _axes(ax, figsize=(6, 3.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_characters(result: RepresentationResult, ax=None):
    """Learned character per conjugacy class (mean and spread over the class) against the
    character predicted by the recovered multiplicities, Σ m_i χ_i, and each irrep's χ_i."""
    fig, ax = _axes(ax)
    classes = result.classes
    x = np.arange(len(classes))
    chi = result.characters.real
    mean = np.array([chi[c].mean() for c in classes])
    spread = np.array([np.ptp(chi[c]) for c in classes])
    predicted = (result.multiplicities @ result.irrep_characters).real
    for i in range(len(result.irrep_names)):
        ax.plot(x, [result.irrep_characters[i][c[0]].real for c in classes], color="0.8", lw=1, zorder=1)
    ax.plot(x, [predicted[c[0]] for c in classes], "s", mfc="none", mec="C1", ms=10, label="Σ m·χ (table)", zorder=2)
    ax.errorbar(x, mean, yerr=spread / 2, fmt="o", color="C0", label="learned χ", zorder=3)
    ax.set_xticks(x, [f"C{j} (size {len(c)})" for j, c in enumerate(classes)], rotation=45, ha="right")
    ax.set_ylabel("character (real part)")
    ax.set_title(f"{result.group_name}: characters by class (grey: irreps)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_multiplicities(result: RepresentationResult, ax=None):
    """Bar chart of the raw multiplicities <χ, χ_i> (real part) with the rounded integers."""
    fig, ax = _axes(ax)
    x = np.arange(len(result.irrep_names))
    ax.bar(x, result.raw_multiplicities.real, color="C0", alpha=0.7, label="<χ, χ_i>")
    ax.plot(x, result.multiplicities, "k_", ms=20, mew=2, label="rounded")
    ax.set_xticks(x, [f"{n}\n(d={d})" for n, d in zip(result.irrep_names, result.irrep_dims, strict=True)])
    ax.set_ylabel("multiplicity")
    ax.set_title(f"irrep multiplicities (residual {result.multiplicity_residual:.1e})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_change_of_basis(result: RepresentationResult, tokens=None, max_tokens: int = 4):
    """Transition matrices before (restricted, normalized, orthonormal subspace basis) and after
    the change of basis into irreducible blocks (block edges drawn). Complex blocks show |·|."""
    import matplotlib.pyplot as plt

    V = len(result.token_elements)
    tokens = list(range(min(V, max_tokens))) if tokens is None else list(tokens)
    fig, axes = plt.subplots(2, len(tokens), figsize=(2.2 * len(tokens), 4.6), squeeze=False)
    for j, v in enumerate(tokens):
        before = result.token_matrices[v]
        lim = max(np.abs(before).max(), 1e-12)
        axes[0, j].imshow(before, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[0, j].set_title(f"token {v}", fontsize=9)
        if result.block_form is not None:
            after = result.block_form[result.token_elements[v]]
            after = after.real if np.isrealobj(after) else np.abs(after)
            axes[1, j].imshow(after, cmap="RdBu_r", vmin=-1, vmax=1)
            for b in result.blocks:
                axes[1, j].add_patch(plt.Rectangle((b.start - 0.5, b.start - 0.5), b.dim, b.dim,
                                                   fill=False, ec="k", lw=1))
        else:
            axes[1, j].text(0.5, 0.5, "no block form\n(not a representation)", ha="center", va="center",
                            transform=axes[1, j].transAxes, fontsize=8)
        for a in axes[:, j]:
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_ylabel("before")
    axes[1, 0].set_ylabel("irreducible blocks")
    fig.suptitle(result.decomposition_string(), fontsize=10)
    fig.tight_layout()
    return fig


def plot_representation(result: RepresentationResult):
    """Characters and multiplicities side by side."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_characters(result, a)
    plot_multiplicities(result, b)
    fig.tight_layout()
    return fig


def plot_comparison(result: ComparisonResult):
    """Left: singular values of the intertwiner system (ascending) with the tolerance; the ones
    under it span the intertwiner space. Right: residual per learned irreducible block."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    plot_intertwiner(result, a)
    plot_block_residuals(result, b)
    fig.suptitle(f"learned {result.learned_decomposition} vs {result.construction}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_intertwiner(result: ComparisonResult, ax=None):
    """Singular values of the intertwiner system (ascending) with the tolerance; the ones under it
    span the intertwiner space."""
    fig, a = _axes(ax, (5, 3.5))
    sv = np.maximum(result.intertwiner_singular_values, 1e-17)
    a.semilogy(np.arange(len(sv)), sv, ".", color="C0")
    a.axhline(result.rtol, color="C3", ls="--", label=f"rtol {result.rtol:g}")
    a.axvline(result.intertwiner_dim - 0.5, color="0.5", ls=":")
    a.set_title(f"intertwiner space: dim {result.intertwiner_dim} (Schur {result.expected_intertwiner_dim})")
    a.set_xlabel("index")
    a.set_ylabel("relative singular value")
    a.legend(fontsize=8)
    return fig


def plot_block_residuals(result: ComparisonResult, ax=None):
    """Residual per learned irreducible block (or the numbers that say why there is none)."""
    fig, b = _axes(ax, (5, 3.5))
    if len(result.block_residuals):
        x = np.arange(len(result.block_residuals))
        b.bar(x, np.maximum(result.block_residuals, 1e-17), color="C2")
        b.set_yscale("log")
        b.set_xticks(x, result.block_names, rotation=45, ha="right")
        b.set_title(f"per-block residual (similarity {result.similarity_residual:.1e})")
    else:
        b.text(0.5, 0.5, f"not equivalent\ncharacter distance {result.character_distance:.3g}\n"
                         f"intertwining residual {result.intertwining_residual:.1e}",
               ha="center", va="center", transform=b.transAxes)
        b.set_xticks([])
        b.set_yticks([])
    return fig


def plot_snapping(result, ax=None):
    """Accuracy of the learned and the snapped transitions at each test length."""
    fig, ax = _axes(ax, (5, 3.5))
    lengths = sorted(result.accuracy_learned)
    x = np.arange(len(lengths))
    ax.bar(x - 0.2, [result.accuracy_learned[L] for L in lengths], 0.4, label="learned")
    ax.bar(x + 0.2, [result.accuracy_snapped[L] for L in lengths], 0.4, label=f"snapped to {result.irreps}")
    ax.set_xticks(x, [f"{L:,}" for L in lengths])
    ax.set_xlabel("length")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"snapping moves tokens by ≤ {result.max_token_distance:.1e}", fontsize=9)
    ax.legend(fontsize=8)
    return fig
