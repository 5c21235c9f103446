"""Plots for analyses.spectral and analyses.tensor_decomposition (weight-based views).

Each function takes a result dataclass, draws on ``ax`` (a new figure when None) and returns the
figure. No arithmetic beyond layout happens here.
"""

from __future__ import annotations

import numpy as np


def _axes(ax, figsize=(5, 5), ncols=1):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(1, ncols, figsize=figsize)
    return fig, ax


def plot_unit_circle(res, tokens=None, token_names=None, ax=None, show_roots=True):
    """Normalized eigenvalues of each token on the complex plane with the unit circle.

    Persistent eigenvalues (modulus >= ``res.persist_threshold``) are filled, decaying ones hollow;
    with ``res.periods`` the expected roots of unity of each token are drawn as small ticks.
    """
    fig, ax = _axes(ax)
    V = res.eigenvalues.shape[0]
    tokens = range(V) if tokens is None else tokens
    th = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(th), np.sin(th), color="0.6", lw=1)
    r = res.persist_threshold
    ax.plot(r * np.cos(th), r * np.sin(th), color="0.8", lw=0.8, ls="--")
    cmap = __import__("matplotlib").colormaps["tab10" if V <= 10 else "tab20"]
    for i, v in enumerate(tokens):
        col = cmap(i % cmap.N)
        ev, keep = res.eigenvalues[v], res.persistent[v]
        name = token_names[v] if token_names is not None else str(v)
        ax.scatter(ev.real[keep], ev.imag[keep], color=col, s=30, label=f"token {name}", zorder=3)
        ax.scatter(ev.real[~keep], ev.imag[~keep], facecolors="none", edgecolors=col, s=30, zorder=3)
        if show_roots and res.periods is not None:
            p = int(res.periods[v])
            roots = np.exp(2j * np.pi * np.arange(p) / p)
            ax.scatter(1.08 * roots.real, 1.08 * roots.imag, marker="|", color=col, s=40)
    ax.set_aspect("equal")
    ax.set_xlim(-1.2, 1.2)
    ax.set_ylim(-1.2, 1.2)
    ax.axhline(0, color="0.9", lw=0.5)
    ax.axvline(0, color="0.9", lw=0.5)
    title = "eigenvalues of A_v / rho(A_v)"
    if res.max_phase_error is not None:
        title += f"\nmax phase error {res.max_phase_error:.2e} rad"
    ax.set_title(title)
    if V <= 12:
        ax.legend(fontsize=7, loc="upper right")
    return fig


def plot_commutators(res, token_names=None, ax=None):
    """Heatmap of relative commutator norms ``||[A_u, A_v]|| / (||A_u|| ||A_v||)``."""
    fig, ax = _axes(ax, (4.5, 4))
    im = ax.imshow(res.commutators, cmap="viridis", vmin=0)
    fig.colorbar(im, ax=ax, shrink=0.8)
    if token_names is not None:
        ax.set_xticks(range(len(token_names)), token_names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(token_names)), token_names, fontsize=7)
    ax.set_title(f"relative commutators (max {res.max_commutator:.1e})")
    ax.set_xlabel("token v")
    ax.set_ylabel("token u")
    return fig


def plot_norm_dynamics(res, ax=None):
    """Lyapunov spectrum of random products and each token's sub-dominant modulus ratio."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    else:
        fig = ax[0].figure
    ax[0].plot(np.arange(1, res.lyapunov.size + 1), res.lyapunov, "o-")
    ax[0].set_xlabel("direction i")
    ax[0].set_ylabel("Lyapunov exponent (per step)")
    L = res.spectral_break_length
    ax[0].set_title("predicted break: " + ("none" if not np.isfinite(L) else f"{L:.0f} steps"))
    ax[1].bar(np.arange(res.subdominant_ratio.size), res.subdominant_ratio)
    ax[1].axhline(res.persist_threshold, color="r", ls="--", lw=0.8, label="persists to horizon")
    ax[1].set_xlabel("token")
    ax[1].set_ylabel("|lambda_2| / |lambda_1|")
    ax[1].set_ylim(0, 1.05)
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_rotation_angles(res, m=None, ax=None):
    """Angle of each 2x2 block per token (in units of 2 pi / m when ``m`` is given)."""
    fig, ax = _axes(ax, (6, 3.5))
    if res.rotation_angles is None:
        raise ValueError("this result has no rotation angles (variant is not rotation/complex_diag)")
    ang = res.rotation_angles * (m / (2 * np.pi) if m else 1.0)
    for n in range(ang.shape[1]):
        ax.plot(np.arange(ang.shape[0]), ang[:, n], "o-", label=f"block {n}")
    ax.set_xlabel("token")
    ax.set_ylabel("angle" + (f" (units of 2pi/{m})" if m else " (rad)"))
    if m:
        ax.set_yticks(np.arange(-m // 2, m // 2 + 1))
        ax.grid(axis="y", color="0.9")
    if ang.shape[1] <= 10:
        ax.legend(fontsize=7)
    return fig


def plot_persistent_subspace(res, ax=None):
    """Relative singular values of the late states, with the cut that defines the subspace."""
    fig, ax = _axes(ax, (5, 3.5))
    sv = np.maximum(np.asarray(res.singular_values, dtype=float), 1e-17)
    ax.semilogy(np.arange(1, len(sv) + 1), sv, "o-", ms=3)
    ax.axvline(res.dimension + 0.5, color="C3", ls=":", label=f"persistent dim {res.dimension}")
    ax.set_xlabel("index")
    ax.set_ylabel("relative singular value of late states")
    ax.legend(fontsize=8)
    return fig


def plot_rank_curves(*curves, ax=None):
    """Relative reconstruction error against rank for CP and/or Tucker ``RankCurve`` results."""
    fig, ax = _axes(ax, (5, 3.5))
    for c in curves:
        x = [r if np.ndim(r) == 0 else r[0] for r in c.ranks]
        ax.semilogy(x, np.maximum(c.rel_errors, 1e-16), "o-", label=c.method)
    ax.set_xlabel("rank (Tucker: r_out = r_in)")
    ax.set_ylabel("relative error")
    ax.legend()
    return fig


def plot_tucker_core(res, ax=None):
    """|core| summed over the token mode: which (output, input) directions the tokens couple."""
    fig, ax = _axes(ax, (4, 3.5))
    im = ax.imshow(np.abs(res.core).sum(axis=2), cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xlabel("input direction")
    ax.set_ylabel("output direction")
    ax.set_title(f"Tucker core, ranks {tuple(res.ranks)}, rel. error {res.rel_error:.1e}", fontsize=9)
    return fig


def plot_token_gates(cp, token_names=None, ax=None):
    """Heatmap of CP token gates [V, R] (component r is on for token v with gate g[v, r])."""
    fig, ax = _axes(ax, (5, 4))
    im = ax.imshow(cp.gates, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xlabel("CP component (by weight)")
    ax.set_ylabel("token")
    if token_names is not None:
        ax.set_yticks(range(len(token_names)), token_names, fontsize=7)
    ax.set_title(f"token gates, rank {cp.rank}, rel. error {cp.rel_error:.1e}")
    return fig


def plot_interaction_spectrum(inter, classes=None, ax=None):
    """Singular values (= 2 x positive eigenvalues of Q_c) of the interaction matrix of each class."""
    fig, ax = _axes(ax, (5, 3.5))
    C = inter.strengths.shape[0]
    for c in (range(C) if classes is None else classes):
        ax.plot(np.arange(1, inter.strengths.shape[1] + 1), inter.strengths[c], "o-", label=f"class {c}")
    ax.set_xlabel("component k")
    ax.set_ylabel("strength s_k")
    if C <= 10:
        ax.legend(fontsize=7)
    return fig
