"""CLI: fast --help, exit code 2 with one line on bad input, eval output, zoo plan resume."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.cli import main

REPO = Path(__file__).resolve().parent.parent


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=120)


def test_help_imports_neither_torch_nor_transformer_lens():
    code = ("import sys\nfrom workbench.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "bad = [m for m in ('torch', 'transformer_lens', 'workbench.models') if m in sys.modules]\n"
            "assert not bad, bad\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr


@pytest.mark.parametrize("args,needle", [
    (["train", "--task", "cyclic:5", "--lr", "abc"], "--lr"),
    (["train", "--task", "cyclic:5", "--variant", "mamba"], "invalid choice: 'mamba'"),
    (["train"], "--task"),
    (["eval", "ck", "--lengths", "10,x"], "comma-separated integers"),
    (["frobnicate"], "invalid choice"),
    (["eval", "definitely-not-a-checkpoint"], "no checkpoint folder or zoo model named"),
    (["zoo", "build", "--only", "no_such_run*", "--dry-run"], "matches no run"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle):
    out = _run(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def _tiny_checkpoint(path):
    from workbench.models import ModelConfig, build_model
    from workbench.checkpoints import save_checkpoint

    torch.manual_seed(0)
    model = build_model(ModelConfig(variant="full", d_vocab=3, d_hidden=6, n_classes=3, normalize=True))
    return save_checkpoint(path, model, "cyclic:3", {"seed": 0}, {"accuracy": {}})


def test_bad_checkpoint_exit_2_with_one_line(tmp_path):
    ck = _tiny_checkpoint(tmp_path / "ck")
    (ck / "config.json").write_text('{"format_version": 1,')
    out = _run("eval", str(ck))
    assert out.returncode == 2 and "malformed JSON" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_bad_checkpoint_in_process(tmp_path, capsys):
    ck = _tiny_checkpoint(tmp_path / "ck")
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[:-10])
    assert main(["eval", str(ck)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err


def test_eval_prints_raw_and_normalized(tmp_path, capsys):
    ck = _tiny_checkpoint(tmp_path / "ck")
    assert main(["eval", str(ck), "--lengths", "5,20", "--n", "32"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("cyclic:3") and "chance=0.3333" in out[0]
    assert out[1].split() == ["length", "accuracy", "normalized"]
    rows = [line.split() for line in out[2:]]
    assert [r[0] for r in rows] == ["5", "20"]
    for _, acc, norm in rows:
        assert float(norm) == pytest.approx((float(acc) - 1 / 3) / (2 / 3), abs=1e-4)
    assert main(["eval", str(ck), "--lengths", "5", "--n", "16", "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert set(js["accuracy"]) == {"5"} and js["task"] == "cyclic:3"
    assert main(["eval", str(ck), "--preset", "deletang", "--stride", "200", "--n", "8"]) == 0
    assert "stride 200" in capsys.readouterr().out


def test_train_command_writes_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--task", "parity", "--hidden", "4", "--steps", "30", "--out", str(out),
               "--eval-lengths", "10", "--no-progress"])
    assert rc == 0 and (out / "model.safetensors").is_file()
    assert "steps=30" in capsys.readouterr().out
    rc = main(["train", "--task", "nosuchtask:3", "--steps", "5", "--out", str(tmp_path / "x"), "--no-progress"])
    assert rc == 2 and "nosuchtask" in capsys.readouterr().err


def test_analyze_and_report_missing_modules(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "analyses.reporting.report", None)
    assert main(["report", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "report is not available" in err


def test_zoo_plan_resume(tmp_path, capsys):
    from workbench import zoo

    plan = [zoo.Run("tiny_full_s0", "parity", "full", 0, options=(("d_hidden", 4), ("steps", 30),
                                                                   ("eval_lengths", (10, 50, 500)))),
            zoo.Run("tiny_cp_s0", "cyclic:3", "cp", 0, options=(("d_hidden", 4), ("steps", 30),
                                                                 ("eval_lengths", (10, 50, 500))))]
    assert zoo.build(root=tmp_path, jobs=1, plan=plan, progress=False) == 0
    first = capsys.readouterr().out
    assert "2 to train" in first
    index = json.loads((tmp_path / "index.json").read_text())["models"]
    assert set(index) == {"tiny_full_s0", "tiny_cp_s0"} and index["tiny_cp_s0"]["variant"] == "cp"
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("# made by: python -m workbench zoo build")
    assert len(csv_lines) == 4
    assert "tiny_cp_s0" in (tmp_path / "results.md").read_text()
    mtime = (tmp_path / "zoo" / "tiny_cp_s0" / "model.safetensors").stat().st_mtime_ns

    assert zoo.build(root=tmp_path, jobs=1, plan=plan, progress=False) == 0
    assert "0 to train" in capsys.readouterr().out
    (tmp_path / "zoo" / "tiny_full_s0" / "metrics.json").unlink()
    assert zoo.build(root=tmp_path, jobs=1, plan=plan, progress=False) == 0
    out = capsys.readouterr().out
    assert "1 to train" in out and "tiny_full_s0" in out and "tiny_cp_s0" not in out.split("to train")[1].split("zoo build: done")[0]
    assert (tmp_path / "zoo" / "tiny_cp_s0" / "model.safetensors").stat().st_mtime_ns == mtime
    from workbench.checkpoints import load_checkpoint

    model, task = load_checkpoint("tiny_full_s0", root=tmp_path)
    assert task.spec == "parity"


def test_zoo_plan_covers_the_issue():
    from workbench import zoo

    plan = zoo.zoo_plan()
    names = [r.name for r in plan]
    assert len(names) == len(set(names))
    cells = {(r.task, r.variant_key) for r in plan}
    for t in zoo.HIERARCHY_TASKS:
        for v in zoo.HIERARCHY_VARIANTS:
            assert sum(1 for r in plan if (r.task, r.variant_key) == (t, v) and not zoo.is_extended_protocol(r)) == 3
    for t in zoo.GROUP_TASKS:
        assert (t, "full") in cells and (t, "cp") in cells
    assert ("parity", "full_additive") in cells and ("cyclic:5", "full_additive") in cells
    echo = [r for r in plan if r.kind == "echo_state"]
    assert echo and all(dict(r.options)["n_draws"] >= 100 for r in echo)
    assert zoo.select(plan, "cyclic5_full_s*") == [r for r in plan if r.name.startswith("cyclic5_full_s")]


def test_reproduction_table_formats_median_best_and_paper():
    from workbench.zoo import reproduction_table

    rows = [{"variant_key": "full", "task": "cyclic:5", "norm_500": x} for x in (1.0, 0.5, 0.9)]
    table = reproduction_table(rows, tasks=("cyclic:5", "fsm:2"), variants=("full",))
    assert table.splitlines()[2] == "| full | 0.90 / 1.00 (1.00) | — (1.00) |"
