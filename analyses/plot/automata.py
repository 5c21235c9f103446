"""Draw automata as graphs with matplotlib (circular layout; networkx is not a dependency).

Parallel edges between two states are merged into one arrow labelled with all their tokens, so a
25-state, 25-symbol machine stays readable; self-loops are drawn as small circles outside the node.
"""

from __future__ import annotations

import numpy as np


def _token_label(tokens, token_names, max_tokens=4):
    names = [token_names[t] if token_names is not None else str(t) for t in tokens]
    if len(names) > max_tokens:
        return ",".join(names[:max_tokens]) + f",+{len(names) - max_tokens}"
    return ",".join(names)


def plot_automaton(transitions, outputs, start=0, ax=None, token_names=None, highlight=(),
                   state_names=None, title=None, radius=1.0, node_size=0.09, slots=None):
    """Draw a Moore machine.

    Parameters
    ----------
    transitions : int array, (n_states, n_symbols)
    outputs : int array, (n_states,)   colours the nodes
    start : int                        drawn with a thick outline
    highlight : iterable of (state, token) cells drawn in red (e.g. mismatches)
    state_names : list of str, optional node labels (default: ids)
    slots : int array, (n_states,), optional  position of each state on the circle (default: id)

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch

    transitions = np.asarray(transitions)
    outputs = np.asarray(outputs)
    n, k = transitions.shape
    if outputs.shape != (n,):
        raise ValueError(f"outputs must have shape ({n},); got {outputs.shape}")
    if ax is None:
        size = 4 + 0.25 * n
        fig, ax = plt.subplots(figsize=(size, size))
    fig = ax.figure
    slots = np.arange(n) if slots is None else np.asarray(slots)
    ang = np.pi / 2 - 2 * np.pi * slots / n
    pos = radius * np.stack([np.cos(ang), np.sin(ang)], 1)
    cmap = plt.colormaps["tab10" if outputs.max() < 10 else "tab20"]
    red = {(int(q), int(v)) for q, v in highlight}
    edges: dict = {}
    for q in range(n):
        for v in range(k):
            edges.setdefault((q, int(transitions[q, v])), []).append(v)
    r = node_size * max(1.0, 8 / max(n, 8)) if n > 8 else node_size
    for (a, b), toks in edges.items():
        bad = any((a, v) in red for v in toks)
        col = "red" if bad else "0.45"
        label = _token_label(toks, token_names)
        if a == b:
            out = pos[a] / np.linalg.norm(pos[a]) if np.linalg.norm(pos[a]) > 0 else np.array([0, 1])
            c = pos[a] + out * 1.6 * r
            ax.add_patch(Circle(c, 0.7 * r, fill=False, color=col, lw=1))
            ax.text(*(c + out * 1.1 * r), label, fontsize=6, color=col, ha="center", va="center")
            continue
        # curve opposite edges apart so a->b and b->a do not overlap
        arrow = FancyArrowPatch(pos[a], pos[b], arrowstyle="-|>", mutation_scale=8, color=col,
                                lw=1.2 if bad else 0.8, connectionstyle="arc3,rad=0.15",
                                shrinkA=r * 200, shrinkB=r * 200)
        ax.add_patch(arrow)
        mid = 0.5 * (pos[a] + pos[b])
        d = pos[b] - pos[a]
        normal = np.array([d[1], -d[0]]) / max(np.linalg.norm(d), 1e-9)
        ax.text(*(mid + 0.08 * normal), label, fontsize=6, color=col, ha="center", va="center")
    for q in range(n):
        ax.add_patch(Circle(pos[q], r, color=cmap(int(outputs[q]) % cmap.N), zorder=3,
                            ec="black", lw=2.5 if q == start else 0.5))
        name = state_names[q] if state_names is not None else str(q)
        ax.text(*pos[q], name, fontsize=7, ha="center", va="center", zorder=4)
    lim = radius + 4 * r
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_extracted_automaton(res, task=None, ax=None, token_names=None):
    """Extracted table over clusters (mismatching cells in red) beside the task's minimal automaton.

    Parameters
    ----------
    res : analyses.automata_extraction.ExtractionResult
    task : workbench Task, optional; when given a second panel shows its minimal automaton
    """
    import matplotlib.pyplot as plt

    if token_names is None and task is not None:
        token_names = list(getattr(task, "token_names", []) or []) or None
    if ax is None:
        ncols = 2 if task is not None else 1
        n = res.transitions.shape[0]
        fig, axes = plt.subplots(1, ncols, figsize=(ncols * (4 + 0.25 * n), 4 + 0.25 * n))
        axes = np.atleast_1d(axes)
    else:
        axes = np.atleast_1d(ax)
        fig = axes[0].figure
    cells = [(m.cluster, m.token) for m in res.mismatches if m.token is not None]
    names = [f"c{c}" for c in range(res.transitions.shape[0])]
    # put each cluster where its aligned true state sits in the task panel, so they line up
    K = len(res.cluster_state)
    key = np.append(res.cluster_state, [np.inf] * (res.transitions.shape[0] - K))
    slots = np.empty(len(key), dtype=np.int64)
    slots[np.argsort(key, kind="stable")] = np.arange(len(key))
    plot_automaton(res.transitions, res.outputs, start=res.start, ax=axes[0], token_names=token_names,
                   highlight=cells, state_names=names, slots=slots,
                   title=("isomorphic" if res.isomorphic else "NOT isomorphic")
                   + f", purity {res.purity:.3f}, {len(res.mismatches)} mismatches")
    if task is not None and len(axes) > 1:
        target = task.automaton.minimize()
        plot_automaton(target.transitions, target.outputs, start=target.start, ax=axes[1],
                       token_names=token_names, title=f"task {task.spec}: minimal automaton")
    return fig
