"""Long-horizon check: do group and cyclic models that solve length 500 still solve 10,000?

For each model: raw final-step accuracy at long lengths *as learned* (the model's own
``workbench.evaluate``, normalisation on, no snapping) and the homomorphism error that
``analyses.groups.representations.recover_representation`` reports on its persistent subspace.

Why both: a model whose token matrices miss a representation by a relative error ``eps`` per
step lets the states of one group element spread by about ``eps`` per step (``analyses.drift``
measures the walk), so it holds up to a horizon of roughly ``gap / eps`` steps and fails beyond
(Chung, Choi & Kim 2026). The table shows where that horizon lies against 10,000.

``python -m analyses.reporting.long_horizon --zoo [--lengths 2000,10000 --n 64]`` scores every zoo group or
cyclic model with accuracy >= 0.99 at 500; ``--runs DIR [DIR ...]`` scores checkpoint folders
(e.g. experiment runs). ``--out FOLDER`` writes ``results.csv`` and ``results.md`` there.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from analyses._result import Result

#: Accuracy at which a model counts as holding at a length.
HOLD = 0.99


@dataclass
class LongHorizonRow:
    name: str
    task: str
    variant: str
    recipe: str
    accuracy: dict            # {length: raw accuracy}
    homomorphism_error: float | None
    n_sequences: int


@dataclass(repr=False)
class LongHorizonResult(Result):
    """Rows of the long-horizon check; ``threshold`` is the accuracy that counts as holding."""
    rows: list = field(default_factory=list)
    lengths: tuple = (10000,)
    threshold: float = HOLD

    def holding(self, length: int | None = None) -> list:
        L = length or max(self.lengths)
        return [r for r in self.rows if (r.accuracy.get(L) or 0) >= self.threshold]

    def fraction_holding(self, length: int | None = None) -> float:
        return len(self.holding(length)) / len(self.rows) if self.rows else float("nan")

    def error_split(self, length: int | None = None) -> tuple[float | None, float | None]:
        """(largest homomorphism error among models that hold, smallest among those that fail)."""
        hold = {id(r) for r in self.holding(length)}
        e_hold = [r.homomorphism_error for r in self.rows if id(r) in hold and r.homomorphism_error is not None]
        e_fail = [r.homomorphism_error for r in self.rows if id(r) not in hold and r.homomorphism_error is not None]
        return (max(e_hold) if e_hold else None, min(e_fail) if e_fail else None)

    def summary(self) -> dict:
        L = max(self.lengths)
        hi, lo = self.error_split(L)
        return {"models": len(self.rows), "length": L, "threshold": self.threshold,
                "holding": len(self.holding(L)), "fraction_holding": self.fraction_holding(L),
                "max_error_holding": hi, "min_error_failing": lo,
                "rows": [asdict(r) | {"accuracy": {str(k): v for k, v in r.accuracy.items()}} for r in self.rows]}

    def sentence(self) -> str:
        L = max(self.lengths)
        hi, lo = self.error_split(L)
        s = (f"{len(self.holding(L))} of {len(self.rows)} models hold >= {self.threshold:g} at length {L:,} "
             f"as learned")
        if hi is not None or lo is not None:
            s += (f"; homomorphism error of those that hold <= {_fmt(hi)}, of those that fail "
                  f">= {_fmt(lo)}")
        return s + "."

    def plot(self, ax=None):
        """Accuracy at the longest length against homomorphism error (``analyses.plot.horizon``)."""
        from analyses.plot.horizon import plot_horizon

        return plot_horizon(self, ax=ax)


def _fmt(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else (
        f"{x:.1e}" if isinstance(x, float) and 0 < x < 0.01 else f"{x:.3f}" if isinstance(x, float) else str(x))


def is_group_like(spec: str) -> bool:
    return spec.startswith(("cyclic:", "group:")) or spec == "parity"


def zoo_candidates(root=None, min_accuracy: float = HOLD) -> list[tuple[str, Path]]:
    """Bilinear zoo models on group or cyclic tasks with accuracy >= ``min_accuracy`` at 500."""
    from workbench.checkpoints import zoo_root

    root = Path(root) if root is not None else zoo_root()
    index = json.loads((root / "index.json").read_text())["models"]
    from workbench.training import BILINEAR_VARIANTS

    return [(name, root / e["folder"]) for name, e in sorted(index.items())
            if is_group_like(e["task"]) and e["variant"] in BILINEAR_VARIANTS
            and (e.get("accuracy_500") or 0) >= min_accuracy]


def check(models: list[tuple[str, Path]], lengths=(10000,), n_sequences: int = 64,
          progress: bool = False) -> LongHorizonResult:
    """Score each (name, checkpoint folder) at ``lengths`` and recover its representation."""
    import numpy as np

    from analyses.groups.representations import recover_representation
    from workbench.checkpoints import load_checkpoint, read_config
    from workbench.recipes import recipe_name_of
    from workbench.training import evaluate

    rows = []
    for i, (name, folder) in enumerate(models, 1):
        model, task = load_checkpoint(str(folder))
        conf = read_config(folder)
        acc = evaluate(model, task, list(lengths), n_sequences, seed=0)
        err = None
        if hasattr(model, "transition_matrices"):
            try:
                err = float(recover_representation(model, task).homomorphism_error)
            except (ValueError, np.linalg.LinAlgError):
                err = None   # no representation recovered: the table shows "—"
        rows.append(LongHorizonRow(name, task.spec, conf["model"]["variant"],
                                   recipe_name_of(conf.get("training", {})), acc, err, n_sequences))
        if progress:
            print(f"[{i}/{len(models)}] {name}: " + " ".join(f"{L}: {acc[L]:.3f}" for L in lengths)
                  + f"  hom. error {_fmt(err)}", flush=True)
    return LongHorizonResult(rows, tuple(lengths))


def write(result: LongHorizonResult, out: Path, command: str) -> list[Path]:
    from workbench.checkpoints import atomic_write_bytes, atomic_write_csv

    out = Path(out)
    cols = ["name", "task", "variant", "recipe", *[f"acc_{L}" for L in result.lengths],
            "homomorphism_error", "n_sequences"]
    atomic_write_csv(out / "results.csv", cols, [dict(zip(cols, [
        r.name, r.task, r.variant, r.recipe, *[r.accuracy.get(L) for L in result.lengths],
        r.homomorphism_error, r.n_sequences], strict=True)) for r in result.rows], command)
    md = ["# Long-horizon check\n", f"Made by `{command}` (`analyses/reporting/long_horizon.py`). Raw final-step "
          f"accuracy as learned (no snapping), {result.rows[0].n_sequences if result.rows else 0} test "
          "sequences per length (seed 0); homomorphism error from "
          "`analyses.groups.representations.recover_representation` (persistent subspace).\n",
          f"**{result.sentence()}**\n",
          "| " + " | ".join(cols[:-1]) + " |", "|" + "---|" * (len(cols) - 1)]
    for r in result.rows:
        md.append(f"| {r.name} | {r.task} | {r.variant} | {r.recipe} | "
                  + " | ".join(_fmt(r.accuracy.get(L)) for L in result.lengths)
                  + f" | {_fmt(r.homomorphism_error)} |")
    atomic_write_bytes(out / "results.md", ("\n".join(md) + "\n").encode())
    return [out / "results.csv", out / "results.md"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analyses.reporting.long_horizon",
                                description="accuracy at long lengths and homomorphism error")
    p.add_argument("--zoo", action="store_true", help="every bilinear zoo group/cyclic model with acc >= 0.99 at 500")
    p.add_argument("--runs", nargs="*", default=[], help="checkpoint folders")
    p.add_argument("--lengths", default="10000")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    try:
        lengths = tuple(int(x) for x in args.lengths.split(","))
        models = zoo_candidates() if args.zoo else []
        models += [(Path(r).name, Path(r)) for r in args.runs]
        if not models:
            raise ValueError("nothing to check: give --zoo or --runs FOLDER ...")
        res = check(models, lengths, args.n, progress=True)
    except ValueError as e:
        sys.stderr.write(f"error: {' '.join(str(e).split())}\n")
        return 2
    print(res.sentence())
    if args.out:
        cmd = "python -m analyses.reporting.long_horizon " + " ".join(argv if argv is not None else sys.argv[1:])
        write(res, Path(args.out), cmd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
