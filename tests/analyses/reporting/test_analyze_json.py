"""The `analyze --json` contract: the keys and types every consumer relies on (more may be added)."""
import json
from pathlib import Path

import pytest

from analyses.reporting.registry import ANALYSES, applicable
from analyses.reporting.summary import analyze_model
from workbench.constructions import construct
from workbench.tasks import make_task

ROOT = Path(__file__).resolve().parents[3]
CONTRACT = {
    "representation": {"homomorphism_error": float, "residual": float, "faithful": bool, "irreps": list},
    "comparison": {"construction": str, "character_distance": float, "intertwiner_dim": int,
                   "residual": float, "causal_accuracy": float},
    "spectra": {"max_phase_error": float, "max_commutator": float},
    "automaton": {"states": int, "isomorphic": bool, "mismatches": int},
}


def _check_contract(out: dict, keys) -> None:
    assert isinstance(out["task"], str) and isinstance(out["variant"], str)
    assert isinstance(out["accuracy"], dict)
    assert "errors" not in out, out.get("errors")
    for key in keys:
        for field, kind in CONTRACT[key].items():
            assert field in out[key], f"{key}.{field} missing"
            value = out[key][field]
            assert isinstance(value, kind) or (kind is float and isinstance(value, int) and not isinstance(value, bool)), \
                f"{key}.{field} = {value!r} is not {kind.__name__}"
    for irrep in out.get("representation", {}).get("irreps", []):
        assert set(irrep) >= {"dim", "multiplicity", "name"}


def test_group_construction_has_every_contract_key():
    task = make_task("group:S3")
    out = json.loads(json.dumps(analyze_model(construct(task, "full"), task, {"500": 1.0})))
    _check_contract(out, ["representation", "comparison", "spectra", "automaton"])
    assert out["representation"]["faithful"] is True and out["automaton"]["isomorphic"] is True
    assert out["spectra"]["max_phase_error"] < 1e-6


def test_registry_decides_what_applies():
    task = make_task("group:S3")
    assert set(applicable(construct(task, "full"), task)) == set(ANALYSES)
    cyc = make_task("cyclic:5")
    assert set(applicable(construct(cyc, "rotation"), cyc)) == set(ANALYSES)    # cyclic: a group task
    fsm = make_task("fsm:3")
    assert set(applicable(construct(fsm, "full"), fsm)) == {"automaton", "spectra", "drift"}


@pytest.mark.skipif(not (ROOT / "checkpoints" / "index.json").exists(), reason="no shipped zoo")
def test_cli_analyze_json_on_shipped_checkpoints(capsys):
    from workbench.cli import main

    assert main(["analyze", "groupS3_full_s0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    _check_contract(out, ["representation", "comparison", "spectra", "automaton"])
    assert main(["analyze", "cyclic5_lstm_s0", "--json"]) == 0
    base = json.loads(capsys.readouterr().out)
    _check_contract(base, ["automaton"])
    assert "spectra" not in base and "representation" not in base   # a baseline: left out, not faked
