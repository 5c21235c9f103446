"""zoo build on a real local Ray (loopback, 2 CPUs) writes what the local backend writes."""
import csv
import json

import pytest
import torch

ray = pytest.importorskip("ray", reason="ray is part of the dev extra; make venv installs it")

from workbench import zoo  # noqa: E402

TINY = (("d_hidden", 4), ("steps", 40), ("eval_every", 20), ("checkpoint_every", 20),
        ("val_length", 10), ("val_sequences", 32), ("long_val_length", 20),
        ("long_val_sequences", 32), ("eval_lengths", (10, 50)), ("eval_sequences", 64))
PLAN = [zoo.Run("tiny_parity_full_s0", "parity", "full", 0, options=TINY),
        zoo.Run("tiny_cyclic3_block1_s0", "cyclic:3", "block1", 0, options=TINY),
        zoo.Run("tiny_cyclic3_full_s1", "cyclic:3", "full", 1, options=TINY)]


def _rows(root):
    lines = [ln for ln in (root / "results.csv").read_text().splitlines() if not ln.startswith("#")]
    rows = list(csv.DictReader(lines))
    for r in rows:
        r.pop("train_time_s")   # timings are the only thing allowed to differ
    return sorted(rows, key=lambda r: r["name"])


def _weights(root):
    # The tensors, not weights_sha256: safetensors writes its metadata dict in a per-process
    # order, so the file's hash differs between processes even for identical tensors.
    from workbench.checkpoints import load_checkpoint

    return {r.name: load_checkpoint(str(root / "zoo" / r.name))[0].state_dict() for r in PLAN}


def test_ray_backend_matches_local_backend(tmp_path, capsys):
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert zoo.build(root=local, jobs=1, plan=PLAN, progress=False) == 0
    assert not ray.is_initialized()
    assert zoo.build(root=remote, jobs=2, plan=PLAN, progress=False, backend="ray", device="auto") == 0
    out = capsys.readouterr().out
    assert "3 to train on a local Ray with 2 CPU(s)" in out
    assert not ray.is_initialized()       # the Ray started for the build is stopped again
    assert _rows(remote) == _rows(local) and len(_rows(local)) == 3
    a, b = _weights(remote), _weights(local)
    for name in a:   # same seed, same machine: bit-identical weights
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), (name, k)
    assert json.loads((remote / "index.json").read_text())["models"].keys() == \
        json.loads((local / "index.json").read_text())["models"].keys()
    # Finished runs are skipped: nothing to train, so no Ray is started at all.
    assert zoo.build(root=remote, jobs=2, plan=PLAN, progress=False, backend="ray") == 0
    assert "0 to train" in capsys.readouterr().out
