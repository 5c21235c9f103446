"""Figures: each function returns a Figure built from results; the registry and CLI use a zoo."""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from _fake_zoo import build_fake_zoo  # noqa: E402

from analyses.reporting import figures as F  # noqa: E402
from analyses.reporting.figures.__main__ import main as figures_main  # noqa: E402


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    return build_fake_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def findings(zoo_dir):
    return F.Findings(F.Zoo.open(zoo_dir))


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_hierarchy_heatmap_shows_ours_beside_paper():
    cells = {("full", "cyclic:5"): (0.5, 0.97, 3)}
    paper = {("full", "cyclic:5"): 1.0, ("rotation", "cyclic:3"): 0.0}
    fig = F.hierarchy_heatmap(cells, paper, ["cyclic:3", "cyclic:5"], ["full", "rotation"])
    heat = [ax for ax in fig.axes if ax.images]
    assert len(heat) == 2
    ours, theirs = (np.ma.filled(ax.images[0].get_array(), np.nan) for ax in heat)
    assert ours[0, 1] == 0.5 and np.isnan(ours[1, 0])
    assert theirs[0, 1] == 1.0 and theirs[1, 0] == 0.0 and np.isnan(theirs[0, 0])
    assert "0.50/0.97" in _texts(fig)          # median/best where they differ


def test_zoo_pick_is_best_seed_then_lowest(tmp_path):
    zoo = F.Zoo(root=tmp_path, index={}, experiments={}, rows=[
        {"name": f"cyclic5_full_s{s}", "task": "cyclic:5", "variant_key": "full", "seed": s, "norm_500": v}
        for s, v in ((0, 0.2), (1, 0.9), (2, 0.9))])
    assert zoo.pick("cyclic:5", "full") == "cyclic5_full_s1"
    assert zoo.pick("cyclic:5", "cp") is None
    assert zoo.median_cells()[("full", "cyclic:5")] == (0.9, 0.9, 3)
    assert "best of 3 seeds" in zoo.describe("cyclic5_full_s1")


def test_every_registered_figure_from_fake_zoo_or_clear_miss(findings):
    made = []
    for name, spec in F.FIGURES.items():
        try:
            fig = spec.make(findings)
        except F.MissingModelError as e:
            assert "zoo build --only" in str(e) or "echo_parity" in str(e), str(e)
            continue
        assert fig.axes, name
        made.append(name)
        matplotlib.pyplot.close(fig)
    # the fake zoo has cyclic:5, S3, fsm:5 and the echo experiment
    assert {"hierarchy", "spectra", "characters_S3", "automaton_fsm", "echo_state", "patching_S3"} <= set(made)


def test_characters_figure_matches_result(findings):
    rep = findings.representation("groupS3_full_s0")
    fig = F.characters_vs_table(rep)
    table_ax = fig.axes[1]
    M = table_ax.images[0].get_array()
    assert M.shape == (len(rep.irrep_names) + 1, len(rep.classes))
    # last row: learned characters, here 2a ⊕ trivial -> (3, 1, 0) on (e, transpositions, 3-cycles)
    np.testing.assert_allclose(M[-1], [3, 1, 0], atol=1e-6)


def test_missing_model_names_the_build_command(findings):
    with pytest.raises(F.MissingModelError, match="groupA5_full"):
        F.make_figure("characters_A5", findings=findings)


def test_make_figure_rejects_unknown_name(findings):
    with pytest.raises(ValueError, match="accepted: hierarchy"):
        F.make_figure("nope", findings=findings)


def test_save_figure_writes_png_and_pdf(tmp_path):
    fig = F.echo_state_parity([{"d_hidden": 2, "n_draws": 3, "opposite_sign_rate": 0.67, "predicted_rate": 0.75,
                                "success_rate_odd": 0.33, "success_rate_even": 0.0, "success_rate_both": 0.0}])
    png, pdf = F.save_figure(fig, tmp_path / "out", "echo")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_cli_writes_named_figure(zoo_dir, tmp_path, capsys):
    assert figures_main(["hierarchy", "spectra", "--out", str(tmp_path), "--zoo", str(zoo_dir)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hierarchy.pdf", "hierarchy.png", "spectra.pdf", "spectra.png"]


def test_cli_all_skips_missing_and_returns_1(zoo_dir, tmp_path, capsys):
    assert figures_main(["all", "--out", str(tmp_path), "--zoo", str(zoo_dir)]) == 1
    err = capsys.readouterr().err
    assert "skipped characters_A5" in err and "zoo build --only" in err
    assert (tmp_path / "hierarchy.png").is_file()


def test_cli_unknown_name_exits_2_listing_names(capsys):
    with pytest.raises(SystemExit) as e:
        figures_main(["hierachy", "--out", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "'hierachy'" in err and "hierarchy" in err and "echo_state" in err and len(err.strip().splitlines()) == 1


def test_cli_missing_zoo_exits_2(tmp_path, capsys):
    assert figures_main(["hierarchy", "--out", str(tmp_path / "o"), "--zoo", str(tmp_path / "none")]) == 2
    assert "zoo build" in capsys.readouterr().err
