"""A researcher's own automaton as a task: ``make_task("automaton:PATH.json")``.

The JSON object (also the form checkpoints store, so a checkpoint never needs the file again)::

    {"transitions": [[next state per symbol] per state],   # transitions[q][a] = δ(q, a)
     "start": 0,                                            # state before any token
     "outputs": [label per state],                          # label emitted in each state
     "token_names": ["a", "b"]}                             # optional, one per symbol

Every field is checked before anything is allocated beyond the input itself, and an error names
the field (and entry) that is wrong and what is accepted.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .automata import Automaton

__all__ = ["AUTOMATON_FORMAT", "MAX_AUTOMATON_ENTRIES", "MAX_AUTOMATON_FILE_BYTES",
           "automaton_record", "parse_record", "read_automaton_file"]

AUTOMATON_FORMAT = ('{"transitions": [[next state per symbol] per state], "start": int, '
                    '"outputs": [label per state], "token_names": [name per symbol] (optional)}')
#: Largest transition table (states x symbols) accepted.
MAX_AUTOMATON_ENTRIES = 10_000_000
#: Largest automaton file read.
MAX_AUTOMATON_FILE_BYTES = 256 << 20
_FIELDS = ("transitions", "start", "outputs", "token_names")


def _bad(what: str, field: str, reason: str) -> ValueError:
    return ValueError(f"{what}: field {field!r}: {reason}; accepted: {AUTOMATON_FORMAT}")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _int_table(value, what: str) -> np.ndarray:
    """``transitions`` as an int64 array [n_states, n_symbols], every entry checked."""
    if isinstance(value, np.ndarray):
        if value.ndim != 2 or not np.issubdtype(value.dtype, np.integer):
            raise _bad(what, "transitions", f"an array of shape {list(value.shape)} and dtype "
                       f"{value.dtype}, not a 2-D integer table")
        rows = value
    else:
        if not isinstance(value, (list, tuple)) or not value:
            raise _bad(what, "transitions", f"{type(value).__name__} {value!r:.60}, not a non-empty "
                       "list of rows")
        width = None
        for q, row in enumerate(value):
            if not isinstance(row, (list, tuple)) or not row:
                raise _bad(what, "transitions", f"row {q} is {row!r:.40}, not a non-empty list "
                           "of next states (one per symbol)")
            if width is None:
                width = len(row)
            elif len(row) != width:
                raise _bad(what, "transitions", f"row {q} has {len(row)} entries but row 0 has "
                           f"{width} (every state needs one next state per symbol)")
            if len(value) * width > MAX_AUTOMATON_ENTRIES:
                raise _bad(what, "transitions", f"{len(value)} states x {width} symbols exceeds "
                           f"{MAX_AUTOMATON_ENTRIES} entries")
            for a, nxt in enumerate(row):
                if not _is_int(nxt):
                    raise _bad(what, "transitions", f"transitions[{q}][{a}] = {nxt!r} is not an "
                               "integer state id")
        rows = np.asarray(value, dtype=np.int64)
    n, k = rows.shape
    if n * k > MAX_AUTOMATON_ENTRIES or n < 1 or k < 1:
        raise _bad(what, "transitions", f"shape [{n}, {k}]; need >= 1 state and symbol, at most "
                   f"{MAX_AUTOMATON_ENTRIES} entries")
    bad = np.argwhere((rows < 0) | (rows >= n))
    if len(bad):
        q, a = (int(i) for i in bad[0])
        raise _bad(what, "transitions", f"transitions[{q}][{a}] = {int(rows[q, a])} is not a state "
                   f"id in 0..{n - 1}")
    return rows.astype(np.int64)


def _outputs(value, n: int, what: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.ndim == 1 else value
    if not isinstance(value, (list, tuple)) or len(value) != n:
        size = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
        raise _bad(what, "outputs", f"got {size}, need a list of {n} labels (one per state)")
    for q, y in enumerate(value):
        if not _is_int(y) or y < 0:
            raise _bad(what, "outputs", f"outputs[{q}] = {y!r} is not a non-negative integer label")
    return np.asarray(value, dtype=np.int64)


def _token_names(value, k: int, what: str) -> list[str]:
    if value is None:
        return [str(a) for a in range(k)]
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != k:
        size = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
        raise _bad(what, "token_names", f"got {size}, need a list of {k} strings (one per symbol)")
    for a, name in enumerate(value):
        if not isinstance(name, str) or not name:
            raise _bad(what, "token_names", f"token_names[{a}] = {name!r} is not a non-empty string")
    if len(set(value)) != k:
        dup = next(x for x in value if list(value).count(x) > 1)
        raise _bad(what, "token_names", f"{dup!r} appears more than once")
    return list(value)


def parse_record(record, what: str) -> tuple[Automaton, list[str]]:
    """Validate the JSON object of the module docstring: ``(automaton, token_names)``.

    Parameters
    ----------
    record : dict with ``transitions``, ``start``, ``outputs`` and optionally ``token_names``
        (lists, or numpy arrays).
    what : where the record comes from, for error messages.

    Raises
    ------
    ValueError naming the bad field (and entry) and the accepted form.
    """
    if not isinstance(record, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(record).__name__}; "
                         f"accepted: {AUTOMATON_FORMAT}")
    unknown = sorted(set(record) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{what}: unknown field(s) {unknown}; accepted: {AUTOMATON_FORMAT}")
    for field in ("transitions", "start", "outputs"):
        if field not in record:
            raise _bad(what, field, "missing")
    tr = _int_table(record["transitions"], what)
    n, k = tr.shape
    start = record["start"]
    if not _is_int(start) or not 0 <= start < n:
        raise _bad(what, "start", f"{start!r} is not a state id in 0..{n - 1}")
    outputs = _outputs(record["outputs"], n, what)
    names = _token_names(record.get("token_names"), k, what)
    return Automaton(tr, int(start), outputs), names


def read_automaton_file(path: str, spec: str) -> tuple[dict, str]:
    """Read and parse an automaton JSON file: ``(record, what)`` for :func:`parse_record`
    (errors name the file; the record is validated by ``parse_record``)."""
    p = Path(path)
    what = f"automaton file {path!r}"
    if not p.is_file():
        raise ValueError(f"bad task spec {spec!r}: {what} not found (cwd {Path.cwd()}); "
                         f"accepted: automaton:PATH.json with {AUTOMATON_FORMAT}")
    size = p.stat().st_size
    if size > MAX_AUTOMATON_FILE_BYTES:
        raise ValueError(f"{what}: {size} bytes exceeds {MAX_AUTOMATON_FILE_BYTES}")
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{what}: not UTF-8 text; accepted: a JSON object {AUTOMATON_FORMAT}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                         f"accepted: {AUTOMATON_FORMAT}") from None
    return record, what


def automaton_record(automaton: Automaton, token_names: list[str]) -> dict:
    """The JSON-safe object of the module docstring (what checkpoints store)."""
    return {"transitions": automaton.transitions.tolist(), "start": int(automaton.start),
            "outputs": automaton.outputs.tolist(), "token_names": list(token_names)}
