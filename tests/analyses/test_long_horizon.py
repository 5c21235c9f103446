"""Long-horizon check on constructions: exact models hold, a planted angle error breaks on time."""
import math

import torch

from analyses.reporting.long_horizon import LongHorizonResult, check, write, zoo_candidates
from workbench.checkpoints import save_checkpoint
from workbench.constructions import construct
from workbench.tasks import make_task


def _save(root, name, model, spec):
    save_checkpoint(root / name, model, spec, {"construction": "test", "seed": 0}, {"accuracy": {}}, seed=0)
    return name, root / name


def test_exact_models_hold_and_a_planted_angle_error_fails_beyond_its_horizon(tmp_path):
    task = make_task("cyclic:5")
    exact = construct(task, "rotation")
    off = construct(task, "rotation")
    delta = 2e-3   # per-step phase error of token 1: the answer flips after ~ (pi/5)/delta ~ 314 steps
    with torch.no_grad():
        off.W_angle[1] += delta
    models = [_save(tmp_path, "exact", exact, "cyclic:5"), _save(tmp_path, "off", off, "cyclic:5"),
              _save(tmp_path, "s3", construct(make_task("group:S3"), "full"), "group:S3")]
    res = check(models, lengths=(50, 3000), n_sequences=32)
    by = {r.name: r for r in res.rows}
    assert by["exact"].accuracy[3000] == 1.0 and by["s3"].accuracy[3000] == 1.0
    assert by["off"].accuracy[50] == 1.0 and by["off"].accuracy[3000] < 0.9
    assert by["exact"].homomorphism_error < 1e-5
    assert by["off"].homomorphism_error > 1e-4          # the planted error is seen
    assert res.fraction_holding(3000) == 2 / 3 and res.fraction_holding(50) == 1.0
    hi, lo = res.error_split(3000)
    assert hi < lo
    assert "2 of 3 models hold" in res.sentence() and len(repr(res)) < 500
    s = res.summary()
    assert s["holding"] == 2 and s["rows"][0]["accuracy"]["3000"] == 1.0
    paths = write(res, tmp_path / "out", "CMD")
    assert paths[1].read_text().count("| exact |") == 1 and paths[0].read_text().startswith("# made by: CMD")
    assert by["exact"].recipe == "construction"
    import matplotlib
    matplotlib.use("Agg")
    res.plot()


def test_zoo_candidates_pick_bilinear_group_models_that_solve_500(tmp_path):
    from tests._fake_zoo import build_fake_zoo

    root = build_fake_zoo(tmp_path / "zoo", echo=False, n_sequences=16)
    names = [n for n, _ in zoo_candidates(root)]
    assert names == ["cyclic5_full_s0", "cyclic5_rotation_s0", "groupS3_full_s0"]
    assert isinstance(LongHorizonResult(), LongHorizonResult) and math.isnan(LongHorizonResult().fraction_holding())
