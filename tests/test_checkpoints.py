"""Checkpoint format: round trip, atomic writes, and every corruption case with its message."""
import json
import os
import pickle

import pytest
import torch

from workbench.checkpoints import (
    FORMAT_VERSION, CheckpointError, atomic_write_bytes, load_checkpoint, read_config,
    resolve_checkpoint, save_checkpoint, sha256_bytes, tensors_to_bytes,
)


def _tiny_model(variant="full", H=8, spec="cyclic:3", **kw):
    from workbench.models import ModelConfig, build_model
    from workbench.tasks import make_task

    task = make_task(spec)
    torch.manual_seed(0)
    cfg = ModelConfig(variant=variant, d_vocab=task.d_vocab, d_hidden=H, n_classes=task.n_classes,
                      normalize=True, **kw)
    return build_model(cfg), task


@pytest.fixture
def ckpt(tmp_path):
    model, task = _tiny_model()
    path = save_checkpoint(tmp_path / "ck", model, task.spec, {"seed": 3, "steps": 10},
                           {"accuracy": {"10": 0.5}}, seed=3)
    return path, model


def _edit_config(path, fn):
    cfg = json.loads((path / "config.json").read_text())
    fn(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


def _rewrite_weights(path, fn):
    """Replace the weights with fn(tensors) and record the new hash (a 'consistent' edit)."""
    from safetensors.torch import load

    tensors = load((path / "model.safetensors").read_bytes())
    blob = tensors_to_bytes(fn(tensors))
    (path / "model.safetensors").write_bytes(blob)
    _edit_config(path, lambda c: c.__setitem__("weights_sha256", sha256_bytes(blob)))


def test_round_trip(ckpt):
    path, model = ckpt
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["format_version"] == FORMAT_VERSION and cfg["task"] == "cyclic:3" and cfg["seed"] == 3
    assert cfg["model"] == model.cfg.to_dict()
    assert {"torch", "safetensors", "python"} <= set(cfg["versions"])
    loaded, task = load_checkpoint(path)
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    tokens = task.eval_set(7, 4, seed=0).tokens
    model.eval()
    assert torch.equal(model(tokens), loaded(tokens))


@pytest.mark.parametrize("variant,kw", [("cp", {"rank": 4}), ("block", {"block_size": 2}),
                                        ("rotation", {}), ("lstm", {})])
def test_round_trip_variants(tmp_path, variant, kw):
    model, task = _tiny_model(variant, **kw)
    save_checkpoint(tmp_path / variant, model, task.spec, {}, {})
    loaded, _ = load_checkpoint(tmp_path / variant)
    assert loaded.cfg.variant == variant
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_loading_never_unpickles(ckpt, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("pickle used while loading a checkpoint")
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    monkeypatch.setattr(torch, "load", boom)
    load_checkpoint(ckpt[0])


@pytest.mark.parametrize("fname", ["model.safetensors", "config.json", "metrics.json"])
def test_missing_file(ckpt, fname):
    path, _ = ckpt
    (path / fname).unlink()
    with pytest.raises(CheckpointError, match=f"missing {fname}"):
        load_checkpoint(path)


def test_missing_folder_and_unknown_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint folder or zoo model named 'nope'"):
        load_checkpoint("nope", root=tmp_path)


def test_truncated_weights(ckpt):
    path, _ = ckpt
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
    (path / "model.safetensors").write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_garbled_header(ckpt):
    path, _ = ckpt
    data = bytearray((path / "model.safetensors").read_bytes())
    data[8:24] = b"\xff" * 16
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="garbled"):
        load_checkpoint(path)


def test_garbled_length_field(ckpt):
    path, _ = ckpt
    data = bytearray((path / "model.safetensors").read_bytes())
    data[0:8] = (10**12).to_bytes(8, "little")
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or garbled"):
        load_checkpoint(path)


def test_flipped_byte_in_tensor_data(ckpt):
    path, _ = ckpt
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-3] ^= 0x40
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)


def test_hash_check_can_be_disabled_for_deliberate_edits(ckpt):
    path, model = ckpt
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-3] ^= 0x01  # a tiny, finite change in the last float
    (path / "model.safetensors").write_bytes(bytes(data))
    loaded, _ = load_checkpoint(path, verify_hash=False)
    assert loaded.cfg == model.cfg


def test_missing_and_extra_tensors(ckpt):
    path, model = ckpt
    names = sorted(model.state_dict())
    _rewrite_weights(path, lambda t: {k: v for k, v in t.items() if k != names[0]})
    with pytest.raises(CheckpointError, match=f"missing tensors \\['{names[0]}'\\]"):
        load_checkpoint(path)
    _rewrite_weights(path, lambda t: {**t, names[0]: model.state_dict()[names[0]], "bogus": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="unexpected tensors \\['bogus'\\]"):
        load_checkpoint(path)


def test_shape_mismatch_with_config(ckpt):
    path, _ = ckpt
    _edit_config(path, lambda c: c["model"].__setitem__("d_hidden", 4))
    with pytest.raises(CheckpointError, match="has shape .* needs"):
        load_checkpoint(path)


def test_wrong_dtype(ckpt):
    path, _ = ckpt
    _rewrite_weights(path, lambda t: {k: v.double() for k, v in t.items()})
    with pytest.raises(CheckpointError, match="dtype"):
        load_checkpoint(path)


def test_nan_weights_rejected(ckpt):
    path, model = ckpt
    name = sorted(model.state_dict())[0]
    _rewrite_weights(path, lambda t: {**t, name: torch.full_like(t[name], float("nan"))})
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(path)


def test_save_refuses_nan(tmp_path):
    model, task = _tiny_model()
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(ValueError, match="NaN/inf"):
        save_checkpoint(tmp_path / "bad", model, task.spec, {}, {})
    assert not (tmp_path / "bad" / "config.json").exists()


def test_unknown_variant(ckpt):
    path, _ = ckpt
    _edit_config(path, lambda c: c["model"].__setitem__("variant", "quantum"))
    with pytest.raises(CheckpointError, match="unknown variant 'quantum'; accepted: full, cp"):
        load_checkpoint(path)


def test_newer_format_version(ckpt):
    path, _ = ckpt
    _edit_config(path, lambda c: c.__setitem__("format_version", FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="newer than this workbench supports"):
        load_checkpoint(path)
    _edit_config(path, lambda c: c.__setitem__("format_version", "1"))
    with pytest.raises(CheckpointError, match="not an integer"):
        load_checkpoint(path)


def test_malformed_json(ckpt):
    path, _ = ckpt
    (path / "config.json").write_text('{"format_version": 1, "model": ')
    with pytest.raises(CheckpointError, match="malformed JSON .*line 1"):
        load_checkpoint(path)
    path2 = path
    (path2 / "config.json").write_text("[]")
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        read_config(path2)


def test_malformed_metrics(ckpt):
    path, _ = ckpt
    (path / "metrics.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="metrics.json: malformed JSON"):
        load_checkpoint(path)


def test_task_does_not_fit_config(ckpt):
    path, _ = ckpt
    _edit_config(path, lambda c: c.__setitem__("task", "cyclic:5"))
    with pytest.raises(CheckpointError, match="does not fit task 'cyclic:5'"):
        load_checkpoint(path)
    _edit_config(path, lambda c: c.__setitem__("task", "nonsense:1"))
    with pytest.raises(CheckpointError, match="bad task spec 'nonsense:1'"):
        load_checkpoint(path)


def test_bad_model_config_field(ckpt):
    path, _ = ckpt
    _edit_config(path, lambda c: c["model"].__setitem__("d_hiddden", 8))
    with pytest.raises(CheckpointError, match="bad model config"):
        load_checkpoint(path)


def test_interrupted_overwrite_is_detected(ckpt, tmp_path):
    """New weights written but the process died before config.json: the hash catches it."""
    path, _ = ckpt
    other, task = _tiny_model(H=8)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)
    atomic_write_bytes(path / "model.safetensors", tensors_to_bytes(other.state_dict()))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write_bytes(target, b"old")

    def failing_replace(src, dst):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(target, b"new contents")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"], "temporary file left behind"


def test_zoo_name_resolution(ckpt, tmp_path):
    path, _ = ckpt
    root = tmp_path / "zooroot"
    (root / "zoo").mkdir(parents=True)
    os.rename(path, root / "zoo" / "tiny")
    (root / "index.json").write_text(json.dumps({"format_version": 1, "models": {
        "tiny": {"folder": "zoo/tiny", "task": "cyclic:3", "variant": "full", "accuracy_500": 0.3},
        "gone": {"folder": "zoo/gone", "task": "cyclic:3", "variant": "full", "accuracy_500": 0.3}}}))
    assert resolve_checkpoint("tiny", root=root) == root / "zoo" / "tiny"
    model, task = load_checkpoint("tiny", root=root)
    assert task.spec == "cyclic:3"
    with pytest.raises(FileNotFoundError, match="zoo model 'gone' points to"):
        load_checkpoint("gone", root=root)
    with pytest.raises(FileNotFoundError, match="zoo names: gone, tiny"):
        load_checkpoint("other", root=root)
    (root / "index.json").write_text("{")
    with pytest.raises(CheckpointError, match="zoo index .* malformed JSON"):
        load_checkpoint("tiny", root=root)
