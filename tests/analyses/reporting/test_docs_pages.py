"""The generated docs pages equal what the generator makes from the shipped zoo data, and the
generator reads the data it claims to (a changed number changes the page)."""
import math
import shutil
from pathlib import Path

import pytest

from analyses.reporting import docs_pages
from analyses.reporting.audit import AuditRow, read_records, records_json

ROOT = Path(__file__).resolve().parents[3]
ZOO = ROOT / "checkpoints"
DOCS = ROOT / "docs"


def test_committed_pages_are_what_the_generator_makes_from_the_shipped_data():
    stale = docs_pages.stale_pages(ZOO, DOCS)
    assert stale == [], f"{stale} differ from the shipped data: run python -m analyses.reporting.docs_pages"


def test_every_generated_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in docs_pages.PAGES:
        assert f"docs/{name}" in readme


def _copy_zoo(tmp_path) -> Path:
    root = tmp_path / "zoo"
    root.mkdir()
    shutil.copy(ZOO / "results.csv", root / "results.csv")
    shutil.copy(ZOO / "analysis.json", root / "analysis.json")
    shutil.copytree(ZOO / "experiments", root / "experiments")
    return root


def _a5_full_cell(page: str) -> str:
    """The full/group:A5 cell of the final-step group table (the first 8-column `full` row)."""
    row = next(line for line in page.splitlines() if line.startswith("| full | ") and line.count("|") == 9)
    return row.split(" | ")[4]


def test_a_changed_number_in_the_csv_changes_the_results_page(tmp_path):
    root = _copy_zoo(tmp_path)
    before = docs_pages.results_page(root)
    assert _a5_full_cell(before) == "1.00 / 1.00"
    lines = (root / "results.csv").read_text().splitlines()
    header = lines[1].split(",")
    changed = 0
    for k, line in enumerate(lines):
        if line.startswith("groupA5_full_s"):
            cells = line.split(",")
            cells[header.index("norm_500")] = "0.321"
            lines[k] = ",".join(cells)
            changed += 1
    assert changed == 3
    (root / "results.csv").write_text("\n".join(lines) + "\n")
    assert _a5_full_cell(docs_pages.results_page(root)) == "0.32 / 0.32"
    assert docs_pages.stale_pages(root, tmp_path / "nowhere") == list(docs_pages.PAGES)


def test_the_audit_page_reports_the_records(tmp_path):
    root = _copy_zoo(tmp_path)
    rows, command = read_records(root / "analysis.json")
    page = docs_pages.audit_page(root)
    ok = sum(r.verdict == "ok" for r in rows)
    assert f"**{ok} of {len(rows)} models are as the analyses must say.**" in page
    assert command in page


def test_check_mode_exits_1_on_a_stale_page_and_0_when_current(tmp_path, capsys):
    root = _copy_zoo(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "results.md").write_text("hand-edited\n")
    assert docs_pages.main(["--zoo", str(root), "--docs", str(docs), "--check"]) == 1
    assert "results.md is stale" in capsys.readouterr().err
    assert docs_pages.main(["--zoo", str(root), "--docs", str(docs)]) == 0
    assert docs_pages.main(["--zoo", str(root), "--docs", str(docs), "--check"]) == 0


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="results.csv.*zoo tables"):
        docs_pages.read_results_csv(tmp_path / "results.csv")
    assert docs_pages.main(["--zoo", str(tmp_path), "--docs", str(tmp_path), "--check"]) == 2
    assert "error:" in capsys.readouterr().err


def test_csv_values_are_typed():
    rows, command = docs_pages.read_results_csv(ZOO / "results.csv")
    assert command.startswith("python -m workbench zoo build")
    r = rows[0]
    assert isinstance(r["seed"], int) and isinstance(r["norm_500"], float)
    assert isinstance(r["solved_validation"], bool) and isinstance(r["name"], str)


def test_audit_records_round_trip_infinities_and_snap_lengths(tmp_path):
    row = AuditRow(name="m", task="group:S3", variant="full", norm_500=1.0, generalises=True,
                   representation="2a", homomorphism_error=0.02, residual=0.007, faithful=True,
                   is_representation=False, automaton_isomorphic=True, automaton_states=6,
                   automaton_mismatches=0, max_commutator=0.6, max_phase_error=0.004,
                   drift_break=math.inf, accuracy_long=0.99,
                   snapped={"irreps": "2a", "max_token_distance": 0.007, "learned": {2000: 0.99, 5000: 0.9},
                            "snapped": {2000: 1.0, 5000: 1.0}},
                   verdict="ok", seconds=1.25)
    path = tmp_path / "analysis.json"
    path.write_text(records_json([row], "cmd"))
    back, command = read_records(path)
    assert command == "cmd" and back == [row]


def test_unknown_records_format_is_refused(tmp_path):
    path = tmp_path / "analysis.json"
    path.write_text('{"format_version": 99, "command": "x", "rows": []}')
    with pytest.raises(ValueError, match="format 99"):
        read_records(path)


def _row(name, **kw):
    base = dict(name=name, task="group:S3", variant="full", norm_500=1.0, generalises=True,
                representation="2a", homomorphism_error=0.02, residual=0.007, faithful=True,
                is_representation=False, automaton_isomorphic=True, automaton_states=6,
                automaton_mismatches=0, max_commutator=0.6, max_phase_error=0.004,
                drift_break=3000.0, accuracy_long=1.0,
                snapped={"irreps": "2a", "max_token_distance": 0.007, "learned": {2000: 1.0, 5000: 0.9},
                         "snapped": {2000: 1.0, 5000: 1.0}},
                verdict="generalises but only an approximate representation (errors above atol)", seconds=1.0)
    return AuditRow(**{**base, **kw})


def test_audit_page_counts_and_names_what_the_rows_say(tmp_path):
    rows = [
        _row("groupS3_full_s0"),
        _row("groupS3_full_s1", homomorphism_error=0.05, drift_break=500.0),      # forecast wrong: held
        _row("groupS3_full_s2", snapped={"irreps": "2a", "max_token_distance": 0.009,
                                         "learned": {2000: 0.5, 5000: 0.1}, "snapped": {2000: 1.0, 5000: 0.4}},
             accuracy_long=0.5, drift_break=math.inf),                              # forecast wrong: failed
        _row("cyclic5_rotation_s0", task="cyclic:5", variant="rotation", norm_500=0.1, generalises=False,
             representation="1a ⊕ 1b", homomorphism_error=0.3, is_representation=False, faithful=True,
             max_commutator=1e-17, drift_break=None, accuracy_long=None, snapped=None, verdict="ok"),
    ]
    (tmp_path / "analysis.json").write_text(records_json(rows, "python -m analyses.reporting.audit"))
    page = docs_pages.audit_page(tmp_path)
    assert "**1 of 4 models are as the analyses must say.** 3 generalise." in page
    assert "errors above atol): 3 (" in page
    assert "between 2.0e-02 and 5.0e-02" in page
    assert "| group:S3 | 2a (full s0); 2a (full s1); 2a (full s2) |" in page
    assert "| break before 2,000 | 0 | 1 |" in page and "| hold to 2,000 | 1 | 1 |" in page
    assert "| groupS3_full_s1 | 500 | 1.000 |" in page and "| groupS3_full_s2 | none | 0.500 |" in page
    assert "Of 3 models, 0 hold accuracy ≥ 0.99 at length 5,000 as learned and 2 once snapped." in page
    assert "Not held at 5,000 even when snapped: `groupS3_full_s2`." in page
    assert "largest commutator of a diagonal-class model is 1.0e-17" in page
