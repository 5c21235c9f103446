"""The shipped zoo beside the paper's hierarchy table: which cells reproduce, within a tolerance.

    from analyses.reporting.paper_comparison import compare_with_paper
    res = compare_with_paper(Zoo.open())     # median over seeds vs the paper, |difference| <= tol

A cell is a (zoo key, task) pair the paper reports at length 500 (chance-normalized). It
reproduces when the zoo's median over seeds is within ``tol`` of the paper's number; the best
seed is kept beside, because the paper reports one run per cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analyses._result import Result, format_number


@dataclass(repr=False)
class PaperComparison(Result):
    """Zoo medians against the paper's table. Arrays are aligned: one entry per compared cell."""

    keys: list[str]                 # zoo key of each cell
    tasks: list[str]                # task spec of each cell
    paper: np.ndarray               # [n] the paper's chance-normalized accuracy at length 500
    median: np.ndarray              # [n] zoo median over seeds
    best: np.ndarray                # [n] zoo best seed
    n_seeds: np.ndarray             # [n]
    tol: float
    metric: str = "norm_500"
    missing: list[tuple[str, str]] = field(default_factory=list)   # paper cells without zoo runs

    @property
    def n_cells(self) -> int:
        return len(self.keys)

    @property
    def reproduced(self) -> np.ndarray:
        """[n] bool: |median - paper| <= tol."""
        return np.abs(self.median - self.paper) <= self.tol

    @property
    def fraction_reproduced(self) -> float | None:
        return float(self.reproduced.mean()) if self.n_cells else None

    @property
    def max_abs_difference(self) -> float | None:
        return float(np.abs(self.median - self.paper).max()) if self.n_cells else None

    def disagreements(self) -> list[dict]:
        """The cells outside the tolerance, largest difference first."""
        idx = np.flatnonzero(~self.reproduced)
        idx = idx[np.argsort(-np.abs(self.median - self.paper)[idx], kind="stable")]
        return [{"key": self.keys[i], "task": self.tasks[i], "paper": float(self.paper[i]),
                 "median": float(self.median[i]), "best": float(self.best[i])} for i in idx]

    def summary(self) -> dict:
        return {"metric": self.metric, "tol": self.tol, "n_cells": self.n_cells,
                "n_reproduced": int(self.reproduced.sum()),
                "fraction_reproduced": self.fraction_reproduced,
                "max_abs_difference": self.max_abs_difference,
                "n_missing": len(self.missing), "disagreements": self.disagreements()}

    def sentence(self) -> str:
        if not self.n_cells:
            return "no zoo run matches a cell of the paper's table"
        return (f"{int(self.reproduced.sum())} of {self.n_cells} cells of the paper's table reproduce "
                f"(zoo median within {format_number(self.tol)} of the paper); the largest difference is "
                f"{format_number(self.max_abs_difference)}"
                + (f"; {len(self.missing)} cells have no zoo run" if self.missing else ""))

    def plot(self, ax=None):
        from analyses.plot.zoo import plot_paper_comparison

        return plot_paper_comparison(self, ax=ax)


def compare_with_paper(zoo, tol: float = 0.1, metric: str = "norm_500") -> PaperComparison:
    """Compare the zoo's cells (median over seeds of ``metric``) with the paper's table.

    Parameters
    ----------
    zoo : ``analyses.reporting.figures.Zoo`` (``Zoo.open()``), or anything with ``median_cells(metric)``.
    tol : a cell reproduces when ``|median - paper| <= tol`` (chance-normalized accuracy, 0..1).
    metric : the zoo row field compared (``norm_500``: final step, as the paper's table).
    """
    if not (isinstance(tol, (int, float)) and 0 <= tol <= 1):
        raise ValueError(f"tol={tol!r} is not accepted: a chance-normalized accuracy difference in [0, 1]")
    from workbench.variants import PAPER_CYCLIC_ROWS, PAPER_FSM_ROWS
    from workbench.zoo import _CYC, _FSM

    cells = zoo.median_cells(metric)
    keys, tasks, paper, med, best, n, missing = [], [], [], [], [], [], []
    for rows, specs in ((PAPER_CYCLIC_ROWS, _CYC), (PAPER_FSM_ROWS, _FSM)):
        for key, values in rows.items():
            for spec, p in zip(specs, values, strict=True):
                if (key, spec) not in cells:
                    missing.append((key, spec))
                    continue
                m, b, k = cells[(key, spec)]
                keys.append(key)
                tasks.append(spec)
                paper.append(p)
                med.append(m)
                best.append(b)
                n.append(k)
    return PaperComparison(keys=keys, tasks=tasks, paper=np.asarray(paper, float), median=np.asarray(med, float),
                           best=np.asarray(best, float), n_seeds=np.asarray(n, int), tol=float(tol),
                           metric=metric, missing=missing)
