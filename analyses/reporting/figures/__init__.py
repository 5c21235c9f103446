"""Figures of the workbench: one function per figure, and a registry that makes each from the zoo.

Two layers:

* :mod:`analyses.plot.zoo` — ``hierarchy_heatmap(cells, paper, tasks, variants)``,
  ``accuracy_vs_length``, ``unit_circle_spectra``, ``characters_vs_table``,
  ``irrep_multiplicities``, ``automaton_graph``, ``patching_map``, ``echo_state_parity``,
  ``comparison_figure``: data or result objects in, a matplotlib Figure out. Use them from a
  notebook on any model.
* :data:`FIGURES` — ``name -> Figure spec`` whose ``make(findings)`` picks the zoo models,
  runs the analyses (memoised in :class:`~analyses.reporting.figures.findings.Findings`) and calls one of
  the functions above. ``python -m analyses.reporting.figures NAME|all --out DIR`` writes ``NAME.png`` and
  ``NAME.pdf`` for each; :func:`make_figure` does the same from Python.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from analyses.reporting.figures.findings import Findings, MissingModelError, missing_hint
from analyses.plot.zoo import (
    accuracy_vs_length, automaton_graph, characters_vs_table, comparison_figure, drift_panels, echo_state_parity,
    hierarchy_heatmap, irrep_multiplicities, patching_map, unit_circle_spectra,
)
from analyses.reporting.figures.zoo_data import Zoo, ZooNotFoundError
from workbench.variants import GROUP_KEYS, LENGTH_KEYS, SPECTRA_KEYS

__all__ = [
    "FIGURES", "FigureSpec", "make_figure", "save_figure", "Zoo", "ZooNotFoundError", "Findings",
    "MissingModelError", "hierarchy_heatmap", "accuracy_vs_length", "unit_circle_spectra",
    "characters_vs_table", "irrep_multiplicities", "automaton_graph", "patching_map",
    "echo_state_parity", "comparison_figure", "drift_panels", "SPECTRA_VARIANTS", "LENGTH_VARIANTS",
]

#: Variants shown on the unit circle (bilinear ones: baselines have no transition matrices).
SPECTRA_VARIANTS = SPECTRA_KEYS
#: Variants drawn in the accuracy-against-length panels.
LENGTH_VARIANTS = LENGTH_KEYS
GROUP_PANELS = (("group:S3", "full"), ("group:S3", "cp"), ("group:D4", "full"), ("group:A5", "full"),
                ("group:S3/gens", "full"), ("cyclic:5", "full"))


@dataclass(frozen=True)
class FigureSpec:
    """A named figure: ``make(findings) -> Figure``; ``caption`` says what it shows."""
    name: str
    caption: str
    make: Callable


def _zoo_consts():
    from workbench import zoo

    return zoo


def _hierarchy(f: Findings):
    z = _zoo_consts()
    return hierarchy_heatmap(f.zoo.median_cells(), z.PAPER_RESULTS, z._CYC + z._FSM, z.HIERARCHY_VARIANTS,
                             title="modular addition and random FSMs: chance-normalized accuracy at length 500")


def _hierarchy_groups(f: Findings):
    z = _zoo_consts()
    return hierarchy_heatmap(f.zoo.median_cells(), z.PAPER_RESULTS, z.GROUP_TASKS, GROUP_KEYS,
                             title="groups and modular arithmetic: chance-normalized accuracy at length 500")


def cells_by_length(zoo: Zoo, lengths=(10, 50, 500)) -> dict:
    """``{length: Zoo.median_cells("norm_<length>")}`` (the accuracies every run's metrics hold)."""
    return {L: zoo.median_cells(f"norm_{L}") for L in lengths}


def _accuracy_vs_length(f: Findings):
    z = _zoo_consts()
    return accuracy_vs_length(cells_by_length(f.zoo), z._CYC + z._FSM, LENGTH_VARIANTS)


def spectra_panels(f: Findings, task: str = "cyclic:5", variants=SPECTRA_VARIANTS):
    """``[(title, SpectraResult)]`` for the variants of ``task`` the zoo has."""
    panels = []
    for v in variants:
        name = f.zoo.pick(task, v)
        if name is not None:
            panels.append((f"{task}, {v} (seed {f.zoo.row(name)['seed']})", f.spectra(name)))
    if not panels:
        raise MissingModelError(missing_hint(f.zoo, task, variants[0]))
    return panels


def _spectra(f: Findings):
    return unit_circle_spectra(spectra_panels(f))


def _characters(group: str):
    def make(f: Findings):
        return characters_vs_table(f.representation(f.require(f"group:{group}", "full")))
    return make


#: Models whose state drift is drawn (the full models of the group and modular-addition tasks).
DRIFT_PANELS = (("group:S3", "full"), ("group:D4", "full"), ("group:A5", "full"), ("cyclic:5", "full"),
                ("cyclic:10", "full"), ("cyclic:50", "full"))


def _drift(f: Findings, cells=DRIFT_PANELS):
    panels = []
    for task, v in cells:
        name = f.zoo.pick(task, v)
        if name is not None:
            panels.append((name, f.drift(name)))
    if not panels:
        raise MissingModelError(missing_hint(f.zoo, cells[0][0], cells[0][1]))
    return drift_panels(panels)


def multiplicity_panels(f: Findings, cells=GROUP_PANELS):
    panels = []
    for task, v in cells:
        name = f.zoo.pick(task, v)
        if name is not None:
            panels.append((f"{task}, {v} (seed {f.zoo.row(name)['seed']})", f.representation(name)))
    if not panels:
        raise MissingModelError(missing_hint(f.zoo, cells[0][0], cells[0][1]))
    return panels


def _multiplicities(f: Findings):
    return irrep_multiplicities(multiplicity_panels(f))


def _automaton(task: str, variant: str):
    def make(f: Findings):
        name = f.require(task, variant)
        _, t = f.zoo.load(name)
        return automaton_graph(f.extraction(name), t, title=f"extracted automaton: {f.zoo.describe(name)}")
    return make


def _patching(task: str, variant: str):
    def make(f: Findings):
        name = f.require(task, variant)
        return patching_map(f.patching(name), title=f"activation patching: {f.zoo.describe(name)}")
    return make


def _echo(f: Findings):
    ex = [e for k, e in f.zoo.experiments.items() if k.startswith("echo_parity_H")]
    if not ex:
        raise MissingModelError(f"the zoo at {f.zoo.root} has no experiments/echo_parity_H*.json; run "
                                "`python -m workbench zoo build --only 'echo_parity_*'`")
    return echo_state_parity(ex)


def _comparison(group: str):
    def make(f: Findings):
        return comparison_figure(f.comparison(f.require(f"group:{group}", "full")))
    return make


FIGURES: dict[str, FigureSpec] = {s.name: s for s in [
    FigureSpec("hierarchy", "Reproduction of the paper's hierarchy table (modular addition, random "
               "FSMs): our chance-normalized accuracy at length 500 beside the paper's.", _hierarchy),
    FigureSpec("hierarchy_groups", "Group word problems and modular arithmetic, full and cp, beside "
               "the paper's number where it gives one.", _hierarchy_groups),
    FigureSpec("accuracy_vs_length", "Chance-normalized accuracy at test lengths 10, 50 and 500 per "
               "variant (median over seeds, band up to the best seed; grey: training lengths).",
               _accuracy_vs_length),
    FigureSpec("spectra", "Eigenvalues of the normalized per-token transitions of cyclic:5 models on "
               "the unit circle (filled: persistent at length 500; ticks: expected roots of unity).",
               _spectra),
    FigureSpec("characters_S3", "Learned characters of the S3 full model per conjugacy class against "
               "S3's character table.", _characters("S3")),
    FigureSpec("characters_A5", "Learned characters of the A5 full model against A5's character table.",
               _characters("A5")),
    FigureSpec("multiplicities", "Irrep multiplicities <χ, χ_i> of the representations learned on "
               "group tasks (bars: raw, ticks: rounded).", _multiplicities),
    FigureSpec("comparison_S3", "Learned against constructed on S3: intertwiner singular values and "
               "per-block residuals.", _comparison("S3")),
    FigureSpec("drift", "State drift of the full group and modular-addition models: distance of the "
               "states from their step 10-50 positions against step (log-log), with the margin (half "
               "the smallest gap between positions) and the predicted break length.", _drift),
    FigureSpec("automaton_fsm", "Automaton extracted from the hidden states of the fsm:5 full model "
               "beside the task's minimal automaton (red: mismatching transitions).",
               _automaton("fsm:5", "full")),
    FigureSpec("automaton_modarith", "Automaton extracted from the modarith:5 full model.",
               _automaton("modarith:5", "full")),
    FigureSpec("patching_modarith", "Activation patching on modarith:5 (full): clean activations "
               "patched into corrupted runs, per site and step.", _patching("modarith:5", "full")),
    FigureSpec("patching_S3", "Activation patching on group:S3 (full).", _patching("group:S3", "full")),
    FigureSpec("echo_state", "Frozen random real-diagonal transitions on parity (Prop. 3): the "
               "opposite-sign rate against 1 − 2^−H, and how often parity is actually solved.", _echo),
]}


def save_figure(fig, out_dir, name: str, dpi: int = 120) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` into ``out_dir`` (created); returns both paths.

    Each file is written to a temporary name and renamed, so a crash never leaves half a figure.
    """
    import os

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = out / f"{name}.{ext}"
        tmp = out / f".{name}.{ext}.tmp"
        fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, p)
        paths.append(p)
    return paths


def make_figure(name: str, zoo=None, findings: Findings | None = None):
    """Make one registered figure from a zoo (folder, :class:`Zoo`, or None = the shipped zoo).

    Raises
    ------
    ValueError : unknown name (the message lists the accepted ones).
    ZooNotFoundError : no zoo index.
    MissingModelError : the zoo lacks the model the figure needs (the message says how to train it).
    """
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; accepted: {', '.join(FIGURES)}")
    if findings is None:
        findings = Findings(zoo if isinstance(zoo, Zoo) else Zoo.open(zoo))
    return FIGURES[name].make(findings)
