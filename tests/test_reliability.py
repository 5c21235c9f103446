"""Hostile inputs of issue 15, one by one: each is refused with one line (or handled correctly)."""
import contextlib
import io
import json
import os
import shutil
import stat

import pytest
import torch

from workbench.checkpoints import (
    CONFIG_HASH_KEY, CheckpointError, config_sha256, load_checkpoint, save_checkpoint,
)
from workbench.cli import main
from workbench.limits import LimitError, memory_budget_set, parse_bytes
from workbench.models import ModelConfig, build_model
from workbench.tasks import make_task
from workbench.training import TrainConfig, evaluate, train


def cli(*args):
    """(exit code, stdout, stderr lines) of ``python -m workbench ARGS`` run in-process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue().strip().splitlines()


def assert_one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    for n in needles:
        assert n in err[0], err


def _model(spec="cyclic:5", H=8, **kw):
    task = make_task(spec)
    torch.manual_seed(0)
    return build_model(ModelConfig(variant="full", d_vocab=task.d_vocab, d_hidden=H,
                                   n_classes=task.n_classes, normalize=True, **kw)), task


@pytest.fixture
def ck(tmp_path):
    model, task = _model()
    return save_checkpoint(tmp_path / "ck", model, task.spec, {"seed": 0}, {"accuracy": {"500": 1.0}})


def _edit(path, fn):
    conf = json.loads((path / "config.json").read_text())
    fn(conf)
    (path / "config.json").write_text(json.dumps(conf))


# --- sizes, checked before allocating --------------------------------------------------------

@pytest.mark.parametrize("args,option", [
    (["--hidden", "100000"], "--hidden=100000"),
    (["--batch", "100000000"], "--batch=100000000"),
    (["--train-lengths", "100000000"], "--train-lengths="),
    (["--eval-lengths", "10000000"], "--eval-lengths=10000000"),
    (["--steps", "10000000000"], "--steps="),
    (["--rank", "10000000000000", "--variant", "cp"], "--rank="),
])
def test_train_sizes_refused_before_training(tmp_path, args, option):
    rc, _, err = cli("train", "--task", "cyclic:5", "--no-progress", "--out", tmp_path / "o", *args)
    assert_one_line_error(rc, err, option, "accepted")
    assert not (tmp_path / "o").exists(), "nothing may be written before the sizes are checked"


@pytest.mark.parametrize("args,option", [(["--lengths", "10000000"], "--lengths=10000000"),
                                         (["--n", "100000000"], "--n=100000000")])
def test_eval_sizes_refused(ck, args, option):
    rc, _, err = cli("eval", ck, *args)
    assert_one_line_error(rc, err, option, "memory budget")


def test_budget_can_be_raised_and_lowered(ck, monkeypatch):
    rc, _, err = cli("eval", ck, "--lengths", "50", "--n", "64", "--memory-budget", "1MiB")
    assert_one_line_error(rc, err, "--n=64", "1 MiB")
    assert cli("eval", ck, "--lengths", "50", "--n", "64", "--memory-budget", "1GiB")[0] == 0
    monkeypatch.setenv("WORKBENCH_MEMORY_BUDGET", "1MiB")
    assert cli("eval", ck, "--lengths", "50", "--n", "64")[0] == 2
    with pytest.raises(ValueError, match="not a size"):
        parse_bytes("lots")


def test_python_api_refuses_the_same_sizes():
    with pytest.raises(LimitError, match="d_hidden=100000"):
        ModelConfig(variant="full", d_vocab=5, d_hidden=100000, n_classes=5)
    model, task = _model()
    with pytest.raises(LimitError, match="lengths=10000000"):
        evaluate(model, task, [10_000_000])
    with pytest.raises(LimitError, match="batch_size x length"):
        task.sample(10**8, 100)
    with pytest.raises(LimitError, match="batch_size=100000000"):
        train(TrainConfig(task="cyclic:5", batch_size=10**8), None, progress=False)
    with pytest.raises(ValueError, match="degree=100000001"):
        make_task("group:perm:(0 100000000)")
    with memory_budget_set("64GiB"):
        ModelConfig(variant="full", d_vocab=5, d_hidden=4000, n_classes=5)  # accepted when raised


# --- specs and flags at parse time -------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["--task", "cyclic:1"], "chance level 1"),
    (["--task", "group:Z4/gens"], "chance level 1"),
    (["--task", "cyclic:5", "--state-noise", "nan"], "--state-noise"),
    (["--task", "cyclic:5", "--state-noise", "-0.5"], "--state-noise"),
    (["--task", "cyclic:5", "--seed", "-3"], "--seed"),
])
def test_specs_and_flags_refused_at_parse_time(args, needle):
    rc, _, err = cli("train", "--no-progress", *args)
    assert_one_line_error(rc, err, needle)


def test_out_that_is_a_file_or_another_tasks_checkpoint(tmp_path, ck):
    f = tmp_path / "afile"
    f.write_text("x")
    rc, _, err = cli("train", "--task", "parity", "--out", f, "--no-progress")
    assert_one_line_error(rc, err, "--out", "is a file")
    rc, _, err = cli("train", "--task", "parity", "--out", ck, "--steps", "5", "--no-progress")
    assert_one_line_error(rc, err, "cyclic:5", "--overwrite")
    assert load_checkpoint(ck)[1].spec == "cyclic:5", "refused means untouched"
    rc, _, _ = cli("train", "--task", "parity", "--hidden", "4", "--out", ck, "--steps", "5",
                   "--eval-lengths", "10", "--overwrite", "--no-progress")
    assert rc == 0 and load_checkpoint(ck)[1].spec == "parity"


def test_finished_run_with_empty_metrics_is_retrained(tmp_path):
    args = ["train", "--task", "parity", "--hidden", "4", "--steps", "5", "--eval-lengths", "10",
            "--out", tmp_path / "r", "--no-progress"]
    assert cli(*args)[0] == 0
    (tmp_path / "r" / "metrics.json").write_text("{}")
    with pytest.warns(UserWarning, match="not reusing"):
        rc, out, err = cli(*args)
    assert rc == 0 and out.startswith("trained"), err
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["steps"] == 5


# --- checkpoints bind config and weights -------------------------------------------------------

@pytest.mark.parametrize("edit", [
    lambda c: c.__setitem__("task", "group:Z5"),            # same sizes, another task
    lambda c: c["model"].__setitem__("normalize", False),   # normalisation off
    lambda c: c.__setitem__("seed", 7),                     # any other field
])
def test_semantic_config_edits_are_refused(ck, edit):
    _edit(ck, edit)
    with pytest.raises(CheckpointError, match=CONFIG_HASH_KEY):
        load_checkpoint(ck)
    rc, _, err = cli("analyze", ck, "--json")
    assert_one_line_error(rc, err, CONFIG_HASH_KEY)


@pytest.mark.parametrize("key", ["weights_sha256", CONFIG_HASH_KEY])
def test_missing_hash_is_an_error_unless_trusted(ck, key):
    data = bytearray((ck / "model.safetensors").read_bytes())
    data[-3] ^= 0x01
    _edit(ck, lambda c: c.pop(key))
    with pytest.raises(CheckpointError, match=f"no '{key}'.*trust_unhashed"):
        load_checkpoint(ck)
    rc, _, err = cli("eval", ck, "--lengths", "5", "--n", "8")
    assert_one_line_error(rc, err, "--trust-unhashed")
    if key == "weights_sha256":  # deleting it changed config.json, which config_sha256 covers
        with pytest.raises(CheckpointError, match=CONFIG_HASH_KEY):
            load_checkpoint(ck, trust_unhashed=True)
        _edit(ck, lambda c: c.pop(CONFIG_HASH_KEY))  # a hand-made folder has neither
    assert cli("eval", ck, "--lengths", "5", "--n", "8", "--trust-unhashed")[0] == 0
    if key == CONFIG_HASH_KEY:  # the weights' hash is still checked when present
        (ck / "model.safetensors").write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="SHA-256"):
            load_checkpoint(ck, trust_unhashed=True)


def test_header_is_checked_before_the_model_is_built(ck, monkeypatch):
    """A config declaring d_hidden=8000 next to small weights: refused, no model allocated."""
    import workbench.models as models

    real = models.build_model
    devices = []

    def spy(cfg):
        devices.append(torch.empty(()).device.type)
        return real(cfg)
    monkeypatch.setattr(models, "build_model", spy)
    _edit(ck, lambda c: c["model"].__setitem__("d_hidden", 8000))
    with memory_budget_set("64GiB"), pytest.raises(CheckpointError, match="has shape .* needs"):
        load_checkpoint(ck)
    assert devices == ["meta"]


@pytest.mark.parametrize("header", [
    {"W": {"dtype": "F32", "shape": [2], "data_offsets": [0.5, 8]}},
    {"W": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}},
    {"W": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}},
    {"W": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}},
    {"W": [1, 2]},
    {"__metadata__": {"a": 1}},
])
def test_malformed_safetensors_headers(ck, header):
    raw = json.dumps(header).encode()
    (ck / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * 8)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(ck)


def test_deeply_nested_header(ck):
    raw = b"[" * 100_000 + b"]" * 100_000
    (ck / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw)
    rc, _, err = cli("eval", ck)
    assert_one_line_error(rc, err, "garbled header")


def test_analyze_measures_accuracy_and_prints_strict_json(ck):
    (ck / "metrics.json").write_text(json.dumps({"accuracy": {"500": 1.0}}))
    rc, out, _ = cli("analyze", ck, "--json", "--lengths", "10,500", "--n", "64")
    assert rc == 0
    result = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    model, task = load_checkpoint(ck)
    measured = evaluate(model, task, [10, 500], 64)
    assert result["accuracy"] == {"10": measured[10], "500": measured[500]}
    assert result["accuracy"]["500"] < 0.9  # an untrained model: the copied 1.0 would be wrong


def test_strict_json_turns_non_finite_into_null():
    from workbench.cli import strict_json

    assert json.loads(strict_json({"a": float("nan"), "b": [float("inf"), 1.5]})) == {"a": None, "b": [None, 1.5]}


def test_evaluate_checks_that_the_model_fits_the_task():
    model, _ = _model("cyclic:5")
    with pytest.raises(ValueError, match="does not fit task 'parity'"):
        evaluate(model, make_task("parity"), [10])


def test_zoo_checkpoints_carry_both_hashes():
    from pathlib import Path

    zoo = Path(__file__).resolve().parents[1] / "checkpoints" / "zoo"
    configs = sorted(zoo.glob("*/config.json"))
    if not configs:
        pytest.skip("no zoo here")
    for p in configs:
        conf = json.loads(p.read_text())
        assert conf[CONFIG_HASH_KEY] == config_sha256(conf), p


# --- files ------------------------------------------------------------------------------------

def test_files_get_the_users_umask_and_no_temporaries_survive(tmp_path):
    old = os.umask(0o022)
    try:
        model, task = _model()
        (tmp_path / "ck").mkdir()
        (tmp_path / "ck" / ".model.safetensors.abc123.tmp").write_bytes(b"left by a kill")
        path = save_checkpoint(tmp_path / "ck", model, task.spec, {}, {})
    finally:
        os.umask(old)
    for p in path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]


def test_unexpected_errors_are_one_line_with_a_debug_hint(ck, monkeypatch):
    import workbench.training as training

    def boom(*a, **k):
        raise KeyError("internal")
    monkeypatch.setattr(training, "evaluate", boom)
    rc, _, err = cli("eval", ck)
    assert rc == 1 and len(err) == 1 and "KeyError" in err[0] and "--debug" in err[0]
    with pytest.raises(KeyError):
        cli("eval", ck, "--debug")


def test_training_restarts_cleanly_from_an_unreadable_state(tmp_path):
    from workbench.training import TRAIN_STATE_DIR

    cfg = TrainConfig(task="parity", d_hidden=4, steps=30, eval_every=10, checkpoint_every=10,
                      early_stop=False, eval_lengths=(10,), val_sequences=16, long_val_sequences=16,
                      long_val_length=50, eval_sequences=32)
    ref = train(cfg, tmp_path / "ref", progress=False)
    state = tmp_path / "bad" / TRAIN_STATE_DIR / "lr=0.01"
    state.mkdir(parents=True)
    (state / "state.safetensors").write_bytes(b"\x10" + b"\0" * 20)
    with pytest.warns(UserWarning, match="state.safetensors.*starting from scratch"):
        res = train(cfg, tmp_path / "bad", progress=False)
    assert not res.resumed
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k])
    shutil.rmtree(tmp_path / "bad")
