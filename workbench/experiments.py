"""Experiments as data: a declarative grid of training runs, run with the zoo's machinery.

A grid file (JSON) names the experiment and lists blocks; each block is a cartesian product::

    {"name": "fsm25_objectives",
     "description": "what the experiment asks",
     "grid": [{"recipe": ["paper", "collapse"], "task": ["fsm:25"], "variant": ["full"],
               "seed": [0, 1, 2], "steps": [6000], "d_hidden": [32]}],
     "long_lengths": [10000], "long_sequences": 64}

``recipe`` (a :mod:`workbench.recipes` name, default ``paper``), ``task``, ``variant`` (a zoo
variant key: ``full``, ``cp``, ``block2``, ``rotation``, ...) and ``seed`` are the run's
identity; every other key is a ``TrainConfig`` field, each given as a list of values (a value
that is itself a list, such as ``train_lengths``, is one entry of that list). Fields a block sets
win over the recipe's, which win over the zoo variant key's and the zoo's step cap.

Each grid point becomes a :class:`workbench.zoo.Run`; ``python -m workbench experiment run
GRID.json`` trains those not finished (``zoo.is_finished``: same fingerprint) with ``zoo.build``
(parallel processes, one thread each, every run resumable), keeping the run folders outside the
repository (``--runs``, default ``runs/experiments``, ignored by git), then optionally scores the
finished runs at ``long_lengths`` (stored in each run's metrics.json under ``long_accuracy``),
then writes ``results.csv`` and ``results.md`` (with the command that made them) into
``checkpoints/experiments/<name>/``, one row per grid point, unfinished or failed runs included.
"""
from __future__ import annotations

import csv
import itertools
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

IDENTITY_KEYS = ("recipe", "task", "variant", "seed")
DEFAULT_RUNS_ROOT = "runs/experiments"   # run folders stay out of git (runs/ is ignored)


@dataclass(frozen=True)
class Grid:
    """A parsed grid file. ``points`` are (recipe, task, variant_key, seed, fields) tuples."""
    name: str
    description: str
    points: tuple
    long_lengths: tuple = ()
    long_sequences: int = 64
    source: str = ""
    notes: str = ""          # what happened that the table cannot say (runs stopped by hand, ...)


def _tupled(v):
    return tuple(_tupled(x) for x in v) if isinstance(v, list) else v


def load_grid(path) -> Grid:
    """Read and check a grid file; ``ValueError`` names what is wrong and what is accepted."""
    p = Path(path)
    try:
        spec = json.loads(p.read_text())
    except OSError as e:
        raise ValueError(f"cannot read grid file {str(p)!r}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"grid file {str(p)!r} is not JSON: {e}") from None
    return parse_grid(spec, source=str(p))


def parse_grid(spec: dict, source: str = "") -> Grid:
    from workbench.recipes import RECIPES
    from workbench.training import TrainConfig
    from workbench.zoo import VARIANT_KEYS
    import dataclasses

    if not isinstance(spec, dict):
        raise ValueError(f"a grid is a JSON object with 'name' and 'grid', got {type(spec).__name__}")
    unknown = set(spec) - {"name", "description", "notes", "grid", "long_lengths", "long_sequences"}
    if unknown:
        raise ValueError(f"unknown grid keys {sorted(unknown)}; accepted: name, description, notes, grid, "
                         "long_lengths, long_sequences")
    name = spec.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ :"):
        raise ValueError(f"grid 'name' must be a non-empty folder name without / \\ : or spaces, got {name!r}")
    blocks = spec.get("grid")
    if not isinstance(blocks, list) or not blocks:
        raise ValueError("grid 'grid' must be a non-empty list of blocks ({key: [values]})")
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"task", "variant", "seed", "recipe"}
    points, seen = [], set()
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            raise ValueError(f"grid block {i} must be an object {{key: [values]}}, got {block!r}")
        bad = set(block) - fields - set(IDENTITY_KEYS)
        if bad:
            raise ValueError(f"grid block {i}: unknown keys {sorted(bad)}; accepted: "
                             f"{', '.join(IDENTITY_KEYS)} and TrainConfig fields")
        if "task" not in block:
            raise ValueError(f"grid block {i} needs 'task'")
        axes = {k: v if isinstance(v, list) else [v] for k, v in block.items()}
        axes.setdefault("recipe", ["paper"])
        axes.setdefault("variant", ["full"])
        axes.setdefault("seed", [0])
        for r in axes["recipe"]:
            if r not in RECIPES:
                raise ValueError(f"grid block {i}: unknown recipe {r!r}; accepted: {', '.join(RECIPES)}")
        for v in axes["variant"]:
            if v not in VARIANT_KEYS:
                raise ValueError(f"grid block {i}: unknown variant key {v!r}; accepted: {', '.join(VARIANT_KEYS)}")
        keys = sorted(axes)
        for combo in itertools.product(*(axes[k] for k in keys)):
            d = dict(zip(keys, combo, strict=True))
            extra = tuple(sorted((k, _tupled(v)) for k, v in d.items() if k not in IDENTITY_KEYS))
            point = (d["recipe"], d["task"], d["variant"], int(d["seed"]), extra)
            if point not in seen:
                seen.add(point)
                points.append(point)
    long_lengths = tuple(int(x) for x in spec.get("long_lengths", ()))
    if any(L < 1 for L in long_lengths):
        raise ValueError(f"long_lengths must be positive integers, got {long_lengths}")
    long_sequences = int(spec.get("long_sequences", 64))
    if long_sequences < 1:
        raise ValueError(f"long_sequences must be a positive integer, got {long_sequences}")
    return Grid(name, str(spec.get("description", "")), tuple(points), long_lengths, long_sequences, source,
                str(spec.get("notes", "")))


def _value_tag(v) -> str:
    if isinstance(v, tuple):
        return "-".join(_value_tag(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def run_name(recipe: str, task: str, variant_key: str, seed: int, extra: tuple) -> str:
    from workbench.zoo import task_tag

    tags = "".join(f"_{k}{_value_tag(v)}" for k, v in extra)
    return f"{task_tag(task)}_{variant_key}_{recipe}{tags}_s{seed}"


def grid_runs(grid: Grid) -> list:
    """One :class:`workbench.zoo.Run` per grid point (options = recipe fields + block fields)."""
    from workbench.recipes import check_protocol, get_recipe
    from workbench.tasks import make_task
    from workbench.zoo import Run

    runs = []
    for recipe, task, vk, seed, extra in grid.points:
        r = get_recipe(recipe)
        opts = {**r.fields_for(make_task(task)), **dict(extra), "recipe": recipe}
        run = Run(run_name(recipe, task, vk, seed, extra), task, vk, seed,
                  options=tuple(sorted((k, _tupled(v)) for k, v in opts.items())))
        check_protocol(run.train_config(), r)
        runs.append(run)
    return runs


def runs_root(grid: Grid, runs: str | Path | None = None) -> Path:
    return Path(runs or DEFAULT_RUNS_ROOT) / grid.name


def score_long(grid: Grid, root: Path, plan: list, progress: bool = False) -> int:
    """Add ``long_accuracy`` at ``grid.long_lengths`` to finished runs lacking it; returns how many."""
    if not grid.long_lengths:
        return 0
    from workbench.zoo import score_long as score

    return score(plan, root, grid.long_lengths, grid.long_sequences, progress)


def run_grid(grid: Grid, runs: str | Path | None = None, jobs: int = 1, progress: bool = True,
             out: str | Path | None = None, command: str | None = None) -> int:
    """Train the unfinished runs of ``grid``, score long lengths, write the tables; 0 or 1."""
    from workbench import zoo

    root = runs_root(grid, runs)
    plan = grid_runs(grid)
    rc = zoo.build(root=root, jobs=jobs, progress=progress, plan=plan)
    score_long(grid, root, plan, progress)
    write_results(grid, runs, out, command)
    return rc


def fill_scores(grid: Grid, runs: str | Path | None = None, progress: bool = False) -> None:
    """Add the scores a finished run may lack (every-step accuracy at 500, ``long_lengths``)."""
    from workbench.zoo import rescore_step_accuracy

    root = runs_root(grid, runs)
    plan = grid_runs(grid)
    rescore_step_accuracy(root, plan=plan, progress=progress)
    score_long(grid, root, plan, progress)


def collect(grid: Grid, runs: str | Path | None = None) -> list[dict]:
    """One row per grid point; ``status`` is ``finished`` or ``not finished`` (failed, running or
    never started), so failures stay in the table."""
    from workbench.zoo import collect_rows, is_finished

    root = runs_root(grid, runs)
    plan = grid_runs(grid)
    rows = {r["name"]: r for r in collect_rows(root, plan)}
    out = []
    for (recipe, task, vk, seed, extra), run in zip(grid.points, plan, strict=True):
        row = {"name": run.name, "recipe": recipe, "task": task, "variant_key": vk, "seed": seed,
               "fields": ";".join(f"{k}={_value_tag(v)}" for k, v in extra)}
        done = is_finished(run, root) and run.name in rows
        row["status"] = "finished" if done else "not finished"
        if done:
            r = rows[run.name]
            row.update({k: r.get(k) for k in ("d_hidden", "steps", "train_time_s", "lr", "acc_10",
                                              "acc_50", "acc_500", "norm_500", "step_acc_500",
                                              "solved_validation")})
            m = json.loads((root / "zoo" / run.name / "metrics.json").read_text())
            row["weight_decay"] = m.get("weight_decay")
            for L in grid.long_lengths:
                row[f"acc_{L}"] = m.get("long_accuracy", {}).get(str(L), {}).get("accuracy")
        out.append(row)
    return out


def _fmt(x, nd=3):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else (
        f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def read_table(path) -> list[dict]:
    """The rows of an experiment's ``results.csv`` with numbers as numbers (empty cells: None).

    The first line (``# made by: …``) is skipped; ``summary_cells`` takes what this returns.
    """

    def value(text: str):
        if text == "":
            return None
        if text in ("True", "False"):
            return text == "True"
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return text

    with open(path, newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    return [{k: (v if k in ("name", "recipe", "task", "variant_key", "fields", "status") else value(v))
             for k, v in row.items()} for row in csv.DictReader(lines)]


def summary_cells(rows: list[dict], key: str = "acc_500") -> list[dict]:
    """Rows grouped over seeds: (recipe, task, variant, fields) -> n, median, best, worst."""
    by: dict = {}
    for r in rows:
        by.setdefault((r["recipe"], r["task"], r["variant_key"], r["fields"]), []).append(r)
    cells = []
    for (recipe, task, vk, fields), rs in by.items():
        vals = [r[key] for r in rs if r["status"] == "finished" and r.get(key) is not None]
        cells.append({"recipe": recipe, "task": task, "variant_key": vk, "fields": fields,
                      "seeds": len(rs), "finished": len(vals),
                      "median": statistics.median(vals) if vals else None,
                      "best": max(vals) if vals else None, "worst": min(vals) if vals else None})
    return cells


def write_results(grid: Grid, runs: str | Path | None = None, out: str | Path | None = None,
                  command: str | None = None) -> list[Path]:
    """Write ``results.csv``, ``results.md`` and ``grid.json`` under ``out`` (default
    ``checkpoints/experiments/<name>/``)."""
    from workbench.checkpoints import atomic_write_bytes, atomic_write_csv, zoo_root

    out = Path(out) if out is not None else zoo_root() / "experiments" / grid.name
    rows = collect(grid, runs)
    cmd = command or f"python -m workbench experiment run {grid.source or grid.name + '.json'}"
    cols = ["name", "recipe", "task", "variant_key", "seed", "fields", "status", "d_hidden", "steps",
            "train_time_s", "lr", "weight_decay", "acc_10", "acc_50", "acc_500", "norm_500",
            "step_acc_500", *[f"acc_{L}" for L in grid.long_lengths], "solved_validation"]
    atomic_write_csv(out / "results.csv", cols, rows, cmd)
    keys = ["acc_500", "step_acc_500", *[f"acc_{L}" for L in grid.long_lengths]]
    md = [f"# Experiment `{grid.name}`\n", grid.description + "\n" if grid.description else "",
          f"Made by `{cmd}` (grid: `grid.json` beside this file; run folders outside the repository). "
          "Accuracy is raw final-step accuracy on the test sets (seed 0; 512 sequences, "
          f"{grid.long_sequences} at the long lengths); `every step` is the mean over every step "
          "1–500. Unfinished or failed runs are listed with status `not finished`.\n",
          f"Notes: {grid.notes}\n" if grid.notes else "",
          "## By cell (over seeds)\n",
          "| recipe | task | variant | fields | seeds done | " + " | ".join(
              f"{k} median / best" for k in keys) + " |",
          "|" + "---|" * (5 + len(keys))]
    cells = {k: summary_cells(rows, k) for k in keys}
    for i, c in enumerate(cells["acc_500"]):
        vals = [f"{_fmt(cells[k][i]['median'])} / {_fmt(cells[k][i]['best'])}" for k in keys]
        md.append(f"| {c['recipe']} | {c['task']} | {c['variant_key']} | {c['fields'] or '—'} | "
                  f"{c['finished']}/{c['seeds']} | " + " | ".join(vals) + " |")
    md += ["", "## Every run\n", "| " + " | ".join(cols[1:]) + " |", "|" + "---|" * (len(cols) - 1)]
    for r in rows:
        md.append("| " + " | ".join(_fmt(r.get(c)) if c not in ("fields",) else (r[c] or "—")
                                    for c in cols[1:]) + " |")
    atomic_write_bytes(out / "results.md", ("\n".join(md) + "\n").encode())
    spec = {"name": grid.name, "description": grid.description,
            "grid": [json.loads(json.dumps(b)) for b in _blocks_of(grid)]}
    if grid.long_lengths:
        spec.update(long_lengths=list(grid.long_lengths), long_sequences=grid.long_sequences)
    if grid.source and Path(grid.source).resolve() != (out / "grid.json").resolve():
        atomic_write_bytes(out / "grid.json", Path(grid.source).read_bytes())
    elif not grid.source:
        atomic_write_bytes(out / "grid.json", (json.dumps(spec, indent=1) + "\n").encode())
    return [out / "results.csv", out / "results.md", out / "grid.json"]


def _blocks_of(grid: Grid) -> list[dict]:
    """The grid as one block per point (when it was not read from a file)."""
    blocks = []
    for recipe, task, vk, seed, extra in grid.points:
        b = {"recipe": [recipe], "task": [task], "variant": [vk], "seed": [seed]}
        b.update({k: [list(v) if isinstance(v, tuple) else v] for k, v in extra})
        blocks.append(b)
    return blocks


def print_list(grid: Grid, runs: str | Path | None = None, file=sys.stdout) -> None:
    for r in collect(grid, runs):
        acc = f"acc500 {_fmt(r.get('acc_500'))}" if r["status"] == "finished" else ""
        print(f"{r['name']:<60} {r['status']:<13} {acc}", file=file)


def rescore(names: list[str], lengths=(500,), n_sequences: int = 256, seed: int = 12345,
            out: str | Path | None = None, command: str = "", progress: bool = False) -> list[dict]:
    """Re-evaluate checkpoints (zoo names or folders) on another test seed, as a new user would.

    The zoo's own numbers use test seed 0; a fresh seed checks they are not an artefact of those
    sequences. Writes ``results.csv`` / ``results.md`` under ``out`` when given. Returns the rows.
    """
    from workbench.checkpoints import atomic_write_bytes, atomic_write_csv, load_checkpoint, read_config, resolve_checkpoint
    from workbench.recipes import recipe_name_of
    from workbench.training import evaluate

    rows = []
    for name in names:
        folder = resolve_checkpoint(name)
        model, task = load_checkpoint(str(folder))
        conf = read_config(folder)
        acc = evaluate(model, task, list(lengths), n_sequences, seed=seed)
        rows.append({"name": name, "task": task.spec, "recipe": recipe_name_of(conf.get("training", {})),
                     **{f"acc_{L}": acc[L] for L in lengths}})
        if progress:
            print(f"  {name}: " + " ".join(f"{L}: {acc[L]:.3f}" for L in lengths), flush=True)
    if out is not None:
        out = Path(out)
        cols = ["name", "task", "recipe", *[f"acc_{L}" for L in lengths]]
        atomic_write_csv(out / "results.csv", cols, rows, command)
        md = ["# Re-evaluation on a fresh test seed\n",
              f"Made by `{command}`. Raw final-step accuracy, test seed {seed} (the zoo's tables use "
              f"seed 0), {n_sequences} sequences per length.\n",
              "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in rows:
            md.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
        atomic_write_bytes(out / "results.md", ("\n".join(md) + "\n").encode())
    return rows
