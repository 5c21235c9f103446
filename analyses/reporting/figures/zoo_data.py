"""Read the shipped zoo for figures and the report: rows, seeds, model choice, loaded models.

Nothing here trains or analyses; it reads ``checkpoints/index.json`` and the per-run JSON files
through :mod:`workbench.zoo` / :mod:`workbench.checkpoints` (the same code that wrote them) and
loads models with :func:`workbench.checkpoints.load_checkpoint`. The one choice made here is
*which* seed represents a (task, variant) cell in a figure: the best seed by chance-normalized
accuracy at length 500 (ties: lowest seed), and every sentence that uses it says so.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

BUILD_HINT = ("build it with `make zoo` (= `python -m workbench zoo build --jobs 2`), or point "
              "WORKBENCH_CHECKPOINTS / --zoo at a folder that has one")


class ZooNotFoundError(FileNotFoundError, ValueError):  # ValueError: the CLI reports bad input with exit 2
    """The zoo folder has no ``index.json``."""


@dataclass
class Zoo:
    """One zoo folder: its index, its result rows and its experiment files.

    Attributes
    ----------
    root : the zoo folder (``checkpoints/`` by default).
    index : ``{name: {"folder", "task", "variant", "variant_key", "seed", ...}}`` from index.json.
    rows : one dict per finished training run (``workbench.zoo.collect_rows``: ``acc_10``,
        ``norm_500``, ``variant_key``, ``task``, ``seed``, ...).
    experiments : ``{name: dict}`` from ``experiments/*.json`` (frozen random parity runs).
    extended_rows : the rows of the extended table (``workbench.zoo.EXTENDED_RECIPE``), kept apart
        from ``rows`` (the paper-protocol table): they share its (variant, task) cells.
    parent_rows : the rows of the runs the extended table starts from
        (``workbench.zoo.EXTENDED_PARENT_RECIPE``), in neither table.
    """

    root: Path
    index: dict
    rows: list[dict]
    experiments: dict
    extended_rows: list[dict] = field(default_factory=list)
    parent_rows: list[dict] = field(default_factory=list)
    _models: dict = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root=None) -> "Zoo":
        """Open a zoo folder (default: ``workbench.checkpoints.zoo_root()``).

        Raises
        ------
        ZooNotFoundError : no ``index.json`` in the folder (the message says how to build one).
        """
        from workbench.checkpoints import read_index, zoo_root
        from workbench.zoo import EXTENDED_PARENT_RECIPE, collect_rows, extended_rows, protocol_rows

        root = Path(root) if root is not None else zoo_root()
        if not (root / "index.json").is_file():
            raise ZooNotFoundError(f"no zoo index at {root / 'index.json'}: {BUILD_HINT}")
        index = read_index(root)
        # The paper-protocol rows: the extended table (workbench.zoo.EXTENDED_RECIPE) has the same
        # (variant, task) cells and would mix into every hierarchy figure and table.
        every = [r for r in collect_rows(root) if r["name"] in index]
        rows = protocol_rows(every)
        experiments = {}
        exp_dir = root / "experiments"
        if exp_dir.is_dir():
            for p in sorted(exp_dir.glob("*.json")):
                experiments[p.stem] = json.loads(p.read_text())
        return cls(root=root, index=index, rows=rows, experiments=experiments,
                   extended_rows=extended_rows(every),
                   parent_rows=extended_rows(every, EXTENDED_PARENT_RECIPE))

    # ------------------------------------------------------------------ rows and cells

    def cells(self, metric: str = "norm_500") -> dict[tuple[str, str], list[float]]:
        """``{(variant_key, task): [metric of each seed]}`` over the finished runs."""
        out: dict[tuple[str, str], list[float]] = {}
        for r in self.rows:
            if r.get(metric) is not None:
                out.setdefault((r["variant_key"], r["task"]), []).append(float(r[metric]))
        return out

    def median_cells(self, metric: str = "norm_500") -> dict[tuple[str, str], tuple[float, float, int]]:
        """``{(variant_key, task): (median, best, n_seeds)}``, the statistics of ``results.md``."""
        return {k: (statistics.median(v), max(v), len(v)) for k, v in self.cells(metric).items()}

    def has(self, task: str, variant_key: str | None = None) -> bool:
        return bool(self.names(task, variant_key))

    def names(self, task: str | None = None, variant_key: str | None = None) -> list[str]:
        """Zoo names of the runs of a task and/or variant key, sorted by seed."""
        rows = [r for r in self.rows
                if (task is None or r["task"] == task) and (variant_key is None or r["variant_key"] == variant_key)]
        return [r["name"] for r in sorted(rows, key=lambda r: (r["task"], r["variant_key"], r["seed"]))]

    def row(self, name: str) -> dict:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(f"{name!r} is not a finished run of the zoo at {self.root}")

    def pick(self, task: str, variant_key: str) -> str | None:
        """The run that represents a (task, variant) cell: best chance-normalized accuracy at
        length 500, ties to the lowest seed; None when the zoo has no such run."""
        rows = [r for r in self.rows if r["task"] == task and r["variant_key"] == variant_key]
        if not rows:
            return None
        best = max(rows, key=lambda r: (r["norm_500"] if r["norm_500"] is not None else float("-inf"), -r["seed"]))
        return best["name"]

    def describe(self, name: str) -> str:
        """``"cyclic:5, rotation, seed 1 (best of 3 by accuracy at 500; normalized 1.00)"``."""
        r = self.row(name)
        n = len(self.names(r["task"], r["variant_key"]))
        acc = r.get("norm_500")
        acc_s = "—" if acc is None else f"{acc:.2f}"
        pick = f"best of {n} seeds by accuracy at 500; " if n > 1 else ""
        return f"{r['task']}, {r['variant_key']}, seed {r['seed']} ({pick}normalized accuracy at 500: {acc_s})"

    # ------------------------------------------------------------------ models

    def load(self, name: str):
        """``(model, task)`` of a zoo run, loaded once (``workbench.checkpoints.load_checkpoint``)."""
        if name not in self._models:
            from workbench.checkpoints import load_checkpoint

            self._models[name] = load_checkpoint(name, root=self.root)
        return self._models[name]
