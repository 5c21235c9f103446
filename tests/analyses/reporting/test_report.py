"""The HTML report: built from a tiny zoo of constructed models, checked structurally (no browser)."""
import base64
import re

import pytest

from _fake_zoo import build_fake_zoo

from analyses.reporting.figures import ZooNotFoundError
from analyses.reporting.report import build_report, check_page


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    return build_fake_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def page(zoo_dir, tmp_path_factory):
    out = build_report(tmp_path_factory.mktemp("report"), zoo_dir=zoo_dir, progress=False)
    return out, out.read_text(encoding="utf-8"), build_report.last_stats


def test_report_is_one_valid_self_contained_page(page):
    path, text, stats = page
    assert path.name == "index.html"
    assert check_page(text) == []
    assert stats.failures == []
    imgs = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(imgs) == stats.figures >= 6
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)


def test_report_states_findings_from_the_analyses(page):
    _, text, stats = page
    assert stats.findings >= 6
    # the S3 model was built through 2a ⊕ trivial: the representation analysis must say so
    assert "learned 2a ⊕ trivial of S3" in text
    assert "vs construction full:fsm" in text
    assert "isomorphic to the task" in text            # automaton extraction of fsm:5
    for sec in ("reproduction", "cyclic", "fsm", "modarith", "groups", "parity"):
        assert f"<section id='{sec}'>" in text
    assert "(1.00)" in text and "(0.37)" in text        # the paper's numbers beside ours
    assert "every step 1–500: modular addition" in text  # the score that catches length gaming


def test_check_page_catches_broken_pages(page):
    _, text, _ = page
    broken = text.replace("href='#groups'", "href='#nowhere'", 1)
    assert any("broken anchor '#nowhere'" in p for p in check_page(broken))
    bad_img = re.sub(r"base64,[A-Za-z0-9+/=]{40}", "base64,AAAA", text, count=1)
    assert any("image 0" in p for p in check_page(bad_img))
    assert any("leaves the page" in p for p in check_page(text.replace("href='#top'", "href='http://x.org'")))


def test_missing_zoo_says_how_to_build(tmp_path):
    with pytest.raises(ZooNotFoundError, match="zoo build"):
        build_report(tmp_path / "out", zoo_dir=tmp_path / "empty", progress=False)
    assert not (tmp_path / "out" / "index.html").exists()


def test_unknown_family_is_rejected(zoo_dir, tmp_path):
    with pytest.raises(ValueError, match="accepted: \\['cyclic'"):
        build_report(tmp_path, zoo_dir=zoo_dir, progress=False, families=["cylic"])


def test_cli_report_uses_zoo_from_environment(zoo_dir, tmp_path, monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_CHECKPOINTS", str(zoo_dir))
    assert main(["report", "--out", str(tmp_path / "r")]) == 0
    assert check_page((tmp_path / "r" / "index.html").read_text(encoding="utf-8")) == []
    monkeypatch.setenv("WORKBENCH_CHECKPOINTS", str(tmp_path / "nothing"))
    assert main(["report", "--out", str(tmp_path / "r2")]) == 2
    assert "zoo build" in capsys.readouterr().err
