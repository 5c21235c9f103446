"""The zoo audit on a small zoo of exact constructions plus one planted failure."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _fake_zoo import build_fake_zoo  # noqa: E402

from analyses.reporting.audit import audit_zoo, to_markdown  # noqa: E402


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, monkeypatch_module):
    root = build_fake_zoo(tmp_path_factory.mktemp("auditzoo"), echo=False)
    monkeypatch_module.setenv("WORKBENCH_CHECKPOINTS", str(root))
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_constructions_pass_the_audit(zoo):
    rows = audit_zoo(progress=False)
    assert {r.name for r in rows} >= {"cyclic5_full_s0", "groupS3_full_s0", "fsm5_full_s0"}
    for r in rows:
        assert r.generalises, r
        assert r.verdict == "ok", (r.name, r.verdict)
    s3 = next(r for r in rows if r.name == "groupS3_full_s0")
    assert s3.faithful and s3.homomorphism_error < 1e-3
    assert s3.automaton_isomorphic
    # Exact constructions stored in float32 drift only by rounding (~1e-6 after 2,000 steps):
    # any forecast break lies far beyond every length measured; they hold at the long length.
    assert all(r.drift_break > 1e6 for r in rows if r.drift_break is not None)
    assert s3.accuracy_long == 1.0
    text = to_markdown(rows, "test")
    assert f"**{len(rows)} of {len(rows)} models as expected**" in text
    # Snapping an exact construction changes nothing: it held and still holds.
    assert s3.snapped["irreps"] and s3.snapped["max_token_distance"] < 1e-5
    assert s3.snapped["learned"] == s3.snapped["snapped"] == {2000: 1.0, 5000: 1.0}
    n_held = sum(r.drift_break is not None for r in rows)
    assert f"predicted to hold and held {n_held}." in text


def test_drift_forecast_counts_cross_tabulate_prediction_and_measurement():
    from analyses.reporting.audit import AuditRow, drift_forecast_counts

    def row(brk, acc, gen=True):
        return AuditRow(name="m", task="t", variant="full", norm_500=1.0, generalises=gen, representation=None,
                        homomorphism_error=None, residual=None, faithful=None, is_representation=None,
                        automaton_isomorphic=None, automaton_states=None, automaton_mismatches=None,
                        max_commutator=None, max_phase_error=None, drift_break=brk, accuracy_long=acc, snapped=None,
                        verdict="ok", seconds=0.0)
    rows = [row(500.0, 0.5), row(900.0, 1.0), row(float("inf"), 0.2), row(5000.0, 1.0), row(5000.0, 1.0),
            row(100.0, 0.1, gen=False), row(None, 1.0)]
    assert drift_forecast_counts(rows, 2000) == {"predicted_fail_failed": 1, "predicted_fail_held": 1,
                                                 "predicted_hold_failed": 1, "predicted_hold_held": 2}


def test_a_generalising_claim_that_the_analysis_contradicts_is_flagged(zoo):
    # Plant a contradiction: claim a model generalises after scrambling its transitions.
    from analyses.reporting.audit import audit_loaded
    from workbench.checkpoints import load_checkpoint

    model, task = load_checkpoint("groupS3_full_s0")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.W.add_(0.3 * torch.randn(model.W.shape, generator=g))
    row = audit_loaded(model, task, "groupS3_full_s0", "full", norm_500=1.0)
    assert row.verdict != "ok"
    assert "representation" in row.verdict and row.verdict != "ok"


def test_a_failing_model_declared_a_representation_is_flagged(zoo):
    # The exact construction is a faithful representation; claiming it fails at 500 contradicts.
    from analyses.reporting.audit import audit_loaded
    from workbench.checkpoints import load_checkpoint

    model, task = load_checkpoint("groupS3_full_s0")
    row = audit_loaded(model, task, "groupS3_full_s0", "full", norm_500=0.2)
    assert not row.generalises
    assert "fails at 500 yet declared a faithful representation" in row.verdict
