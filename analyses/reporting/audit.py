"""Run the analyses over every bilinear model of the zoo and check what they claim.

This is the acceptance check of the analyses on *trained* models (constructed ones are covered by
the unit tests): for every model that generalises (chance-normalized accuracy ≥ ``solved`` at
length 500) the representation analysis must find a faithful representation with small
homomorphism error and residual, automaton extraction must find an automaton isomorphic to the
task's, and diagonal-class models must have commuting transitions; models that fail at length 500
must not be declared representations. The table is written to ``checkpoints/analysis.md`` and the
same rows, machine-readable, to ``checkpoints/analysis.json`` (:func:`write_records`,
:func:`read_records`), which the generated docs pages read.

``python -m analyses.reporting.audit [--only PATTERN] [--jobs 2] [--out checkpoints/analysis.md]``
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from analyses.reporting.registry import ANALYSES
from workbench.variants import BILINEAR_VARIANTS, DIAGONAL_VARIANTS

#: Variants whose transitions share one eigenbasis (Prop. 2): commutators must vanish.
DIAGONAL_CLASS = frozenset(DIAGONAL_VARIANTS)
BILINEAR = frozenset(BILINEAR_VARIANTS)
#: Length at which generalising models are also scored, to check the drift forecast against.
LONG_LENGTH = 2000
#: Lengths at which generalising group models are scored with their transitions snapped to the
#: exact representation the analysis names (`analyses.groups.snapping`).
SNAP_LENGTHS = (2000, 5000)


@dataclass
class AuditRow:
    """What the analyses said about one zoo model, and whether that is what they must say."""
    name: str
    task: str
    variant: str
    norm_500: float
    generalises: bool
    representation: str | None        # the decomposition sentence, group tasks only
    homomorphism_error: float | None
    residual: float | None
    faithful: bool | None
    is_representation: bool | None
    automaton_isomorphic: bool | None
    automaton_states: int | None
    automaton_mismatches: int | None
    max_commutator: float | None
    max_phase_error: float | None
    drift_break: float | None         # analyses.drift predicted break length (inf: no growth)
    accuracy_long: float | None       # measured final-step accuracy at LONG_LENGTH (generalising models)
    snapped: dict | None              # analyses.groups.snapping: learned vs snapped accuracy at SNAP_LENGTHS
    verdict: str                      # "ok" or what contradicts the expectation
    seconds: float


def audit_model(name: str, entry: dict, norm_500: float, **kw) -> AuditRow:
    """Load one zoo model by name and audit it (see :func:`audit_loaded`)."""
    from workbench.checkpoints import load_checkpoint

    model, task = load_checkpoint(name)
    return audit_loaded(model, task, name, entry.get("variant_key", model.cfg.variant), norm_500, **kw)


def audit_loaded(model, task, name: str, variant_key: str, norm_500: float, solved: float = 0.99,
                 atol: float = 1e-3, commutator_atol: float = 1e-6) -> AuditRow:
    """Analyse one model and compare the analyses' claims with its measured accuracy.

    ``norm_500`` is the model's chance-normalized accuracy at length 500; it ``generalises`` when
    that is at least ``solved``. ``atol`` bounds the homomorphism error and residual of a
    faithful representation, ``commutator_atol`` the commutators of diagonal-class models.
    """
    from analyses import automata_extraction, drift, spectral
    from analyses.groups import representations, snapping

    t0 = time.perf_counter()
    variant = model.cfg.variant
    generalises = norm_500 >= solved
    rep = aut = spec = dr = acc_long = snapped = None
    rep_result = None
    problems = []
    linear = ANALYSES["drift"].applies(model, task)   # affine: no representation, no drift
    if ANALYSES["representation"].applies(model, task):
        try:
            rep_result = representations.recover_representation(model, task, atol=atol)
            rep = rep_result.summary()
        except Exception as exc:  # reported in the table, never hidden
            problems.append(f"representation raised {type(exc).__name__}: {exc}")
    try:
        aut = automata_extraction.summarize(model, task)
    except Exception as exc:
        problems.append(f"extraction raised {type(exc).__name__}: {exc}")
    if ANALYSES["spectra"].applies(model, task):
        try:
            spec = spectral.summarize(model, task)
        except Exception as exc:
            problems.append(f"spectra raised {type(exc).__name__}: {exc}")

    if linear:
        try:
            dr = drift.state_drift(model, task).predicted_break_length
        except Exception as exc:
            problems.append(f"drift raised {type(exc).__name__}: {exc}")
    if generalises:
        from workbench.training import evaluate

        acc_long = evaluate(model, task, [LONG_LENGTH], n_sequences=128)[LONG_LENGTH]
        if rep_result is not None and rep_result.change_of_basis is not None and hasattr(model, "W_U"):
            try:
                ideal = snapping.snap_transitions(model, task, lengths=SNAP_LENGTHS, rep=rep_result)
                snapped = {"irreps": ideal.irreps, "max_token_distance": ideal.max_token_distance,
                           "learned": ideal.accuracy_learned, "snapped": ideal.accuracy_snapped}
            except ValueError as exc:  # e.g. a complex block form: reported, not hidden
                problems.append(f"snapping raised: {exc}")

    if rep is not None:
        ok_rep = (rep["is_representation"] and rep["faithful"]
                  and (rep["homomorphism_error"] or 0) < atol and (rep["residual"] or 0) < atol)
        if generalises and not ok_rep:
            problems.append("generalises but only an approximate representation (errors above atol)"
                            if rep.get("approximate") else
                            "generalises but no faithful representation within atol")
        if not generalises and rep["is_representation"] and rep["faithful"]:
            problems.append("fails at 500 yet declared a faithful representation")
    if aut is not None and generalises and not aut["isomorphic"]:
        problems.append("generalises but the extracted automaton is not isomorphic")
    if spec is not None and variant in DIAGONAL_CLASS and (spec["max_commutator"] or 0) > commutator_atol:
        problems.append(f"diagonal-class commutator {spec['max_commutator']:.1e} > {commutator_atol:g}")
    return AuditRow(
        name=name, task=task.spec, variant=variant_key, norm_500=norm_500,
        generalises=generalises,
        representation=rep["decomposition"] if rep else None,
        homomorphism_error=rep["homomorphism_error"] if rep else None,
        residual=rep["residual"] if rep else None,
        faithful=rep["faithful"] if rep else None,
        is_representation=rep["is_representation"] if rep else None,
        automaton_isomorphic=aut["isomorphic"] if aut else None,
        automaton_states=aut["states"] if aut else None,
        automaton_mismatches=aut["mismatches"] if aut else None,
        max_commutator=spec["max_commutator"] if spec else None,
        max_phase_error=spec["max_phase_error"] if spec else None,
        drift_break=dr, accuracy_long=acc_long, snapped=snapped,
        verdict="ok" if not problems else "; ".join(problems),
        seconds=time.perf_counter() - t0,
    )


def _worker(args):
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)
    return audit_model(*args)


def audit_zoo(only: str | None = None, jobs: int = 1, progress: bool = True) -> list[AuditRow]:
    """Audit every bilinear model of the zoo index (``only``: an fnmatch pattern on names)."""
    from workbench.checkpoints import read_index, zoo_root
    from workbench.zoo import collect_rows

    root = zoo_root()
    index = read_index(root)
    # A model generalises only if it is right both at the final step of length 500 and at every
    # step up to 500 (a model right at the final step can be wrong at shorter lengths).
    norm = {r["name"]: (r["norm_500"] if r.get("step_norm_500") is None or r["norm_500"] is None
                        else min(r["norm_500"], r["step_norm_500"])) for r in collect_rows(root)}
    todo = [(n, e, norm[n]) for n, e in sorted(index.items())
            if e.get("variant") in BILINEAR and n in norm and norm[n] is not None
            and (only is None or fnmatch.fnmatch(n, only))]
    from tqdm.auto import tqdm
    if jobs <= 1:
        return [_worker(t) for t in tqdm(todo, disable=not progress, desc="audit")]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as ex:
        return list(tqdm(ex.map(_worker, todo), total=len(todo), disable=not progress, desc="audit"))


def _fmt(x, spec=".1e"):
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def drift_forecast_counts(rows: list[AuditRow], length: int = LONG_LENGTH) -> dict:
    """How the drift forecast (break before ``length`` or not) matches measured accuracy there.

    Over generalising models with both numbers: counts of (predicted break < length, accuracy at
    length < 0.99) pairs, keyed "predicted_fail_failed", "predicted_fail_held",
    "predicted_hold_failed", "predicted_hold_held".
    """
    out = {"predicted_fail_failed": 0, "predicted_fail_held": 0, "predicted_hold_failed": 0,
           "predicted_hold_held": 0}
    for r in rows:
        if not r.generalises or r.drift_break is None or r.accuracy_long is None:
            continue
        pred = "fail" if r.drift_break < length else "hold"
        got = "failed" if r.accuracy_long < 0.99 else "held"
        out[f"predicted_{pred}_{got}"] += 1
    return out


def snap_counts(rows: list[AuditRow], length: int = SNAP_LENGTHS[-1]) -> dict:
    """Over generalising models that were snapped: how many hold (≥ 0.99) at ``length``, learned
    and snapped."""
    snapped = [r.snapped for r in rows if r.generalises and r.snapped]
    return {"models": len(snapped),
            "learned_hold": sum(s["learned"][length] >= 0.99 for s in snapped),
            "snapped_hold": sum(s["snapped"][length] >= 0.99 for s in snapped)}


def _fmt_snap(s) -> str:
    if not s:
        return "–"
    return " / ".join(f"{s['learned'][L]:.2f}→{s['snapped'][L]:.2f}" for L in SNAP_LENGTHS)


def _fmt_length(x) -> str:
    if x is None:
        return "–"
    return "none" if x == float("inf") else f"{x:,.0f}"


def to_markdown(rows: list[AuditRow], command: str) -> str:
    """The audit as a Markdown page: a summary line, then one row per model."""
    bad = [r for r in rows if r.verdict != "ok"]
    c = drift_forecast_counts(rows)
    sc = snap_counts(rows)
    lines = [
        "# Analyses on the trained zoo",
        "",
        f"Made by `{command}`. Each bilinear zoo model is analysed; a model *generalises* when its "
        "chance-normalized accuracy at length 500 is ≥ 0.99, both at the final step and over every step 1–500 (column norm@500: the smaller of the two). Expected: a generalising group/cyclic "
        "model is a faithful representation (homomorphism error and residual < 1e-3) and its "
        "extracted automaton is isomorphic to the task's; a failing one is not declared a faithful "
        "representation; diagonal-class models commute (≤ 1e-6).",
        "",
        f"**{len(rows) - len(bad)} of {len(rows)} models as expected**"
        + (f"; {len(bad)} not (listed with the reason in the last column)." if bad else "."),
        "",
        f"**Drift forecast against measured accuracy at length {LONG_LENGTH}** (generalising models; "
        f"`analyses.drift` predicts where the states' walk away from their short-length positions "
        f"reaches half the gap to the nearest other state; accuracy at {LONG_LENGTH} is final-step, "
        f"128 sequences, < 0.99 counts as failed): predicted to break before {LONG_LENGTH} and did "
        f"{c['predicted_fail_failed']}, predicted to break but held {c['predicted_fail_held']}, "
        f"predicted to hold but failed {c['predicted_hold_failed']}, predicted to hold and held "
        f"{c['predicted_hold_held']}.",
        "",
        f"**Snapped to the exact representation** (`analyses.groups.snapping`: each generalising group "
        f"model's transitions replaced, on the subspace the analysis uses, by the exact "
        f"representation it names, in its own basis and token scales): of {sc['models']} models, "
        f"{sc['learned_hold']} hold accuracy ≥ 0.99 at length {SNAP_LENGTHS[-1]:,} as learned and "
        f"{sc['snapped_hold']} once snapped (column: learned→snapped at "
        f"{' / '.join(f'{L:,}' for L in SNAP_LENGTHS)}).",
        "",
        "| model | task | variant | norm@500 | representation | hom. error | residual | faithful "
        f"| automaton iso. | states | commutator | phase error | drift break | acc@{LONG_LENGTH} | snapped | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.task} | {r.variant} | {r.norm_500:.3f} | {_fmt(r.representation)} | "
            f"{_fmt(r.homomorphism_error)} | {_fmt(r.residual)} | {_fmt(r.faithful)} | "
            f"{_fmt(r.automaton_isomorphic)} | {_fmt(r.automaton_states)} | "
            f"{_fmt(r.max_commutator)} | {_fmt(r.max_phase_error)} | {_fmt_length(r.drift_break)} | "
            f"{_fmt(r.accuracy_long, '.3f')} | {_fmt_snap(r.snapped)} | {r.verdict} |")
    return "\n".join(lines) + "\n"


#: Format of ``analysis.json``; bump on an incompatible change of the record fields.
RECORDS_FORMAT = 1


def _record(r: AuditRow) -> dict:
    """One row as JSON: an infinite drift forecast (no growth) is the string "inf", snap
    lengths are string keys (JSON objects have string keys)."""
    d = dataclasses.asdict(r)
    if d["drift_break"] is not None and math.isinf(d["drift_break"]):
        d["drift_break"] = "inf"
    if d["snapped"]:
        d["snapped"] = {**d["snapped"], "learned": {str(k): v for k, v in d["snapped"]["learned"].items()},
                        "snapped": {str(k): v for k, v in d["snapped"]["snapped"].items()}}
    d["seconds"] = round(d["seconds"], 3)
    return d


def _row(d: dict) -> AuditRow:
    d = dict(d)
    if d["drift_break"] == "inf":
        d["drift_break"] = math.inf
    if d["snapped"]:
        d["snapped"] = {**d["snapped"], "learned": {int(k): v for k, v in d["snapped"]["learned"].items()},
                        "snapped": {int(k): v for k, v in d["snapped"]["snapped"].items()}}
    return AuditRow(**d)


def records_json(rows: list[AuditRow], command: str) -> str:
    """The audit rows as one JSON document (what :func:`read_records` reads back)."""
    return json.dumps({"format_version": RECORDS_FORMAT, "command": command,
                       "rows": [_record(r) for r in rows]}, indent=1, allow_nan=False) + "\n"


def read_records(path) -> tuple[list[AuditRow], str]:
    """Rows and the command that made them, from an ``analysis.json`` written by the audit."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the audit records {path}: {exc}; "
                         "make them with python -m analyses.reporting.audit") from exc
    if doc.get("format_version") != RECORDS_FORMAT:
        raise ValueError(f"{path}: audit records format {doc.get('format_version')!r}, "
                         f"this version reads {RECORDS_FORMAT}; rerun python -m analyses.reporting.audit")
    return [_row(d) for d in doc["rows"]], doc["command"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analyses.reporting.audit", description=__doc__.splitlines()[0])
    p.add_argument("--only", default=None, help="fnmatch pattern on zoo names, e.g. 'group*_full_*'")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", default=None, help="Markdown file (default: checkpoints/analysis.md)")
    args = p.parse_args(argv)
    from workbench.checkpoints import atomic_write_bytes, zoo_root
    rows = audit_zoo(args.only, args.jobs)
    cmd = "python -m analyses.reporting.audit" + (f" --only '{args.only}'" if args.only else "")
    text = to_markdown(rows, cmd)
    out = Path(args.out) if args.out else zoo_root() / "analysis.md"
    atomic_write_bytes(out, text.encode())
    atomic_write_bytes(out.with_suffix(".json"), records_json(rows, cmd).encode())
    bad = [r for r in rows if r.verdict != "ok"]
    print(f"{len(rows) - len(bad)}/{len(rows)} models as expected; wrote {out} and {out.with_suffix('.json')}")
    for r in bad:
        print(f"  {r.name}: {r.verdict}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(main())
