"""Fuzzing hostile input: random specs, flags, corrupted checkpoints and training states, hook
returns. Each must give a one-line error or a correct result, never a traceback or a silent
wrong load. Bounded ``max_examples`` keep the whole file to seconds."""
import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.checkpoints import (
    CheckpointError, config_sha256, load_checkpoint, save_checkpoint, tensors_to_bytes,
)
from workbench.cli import main
from workbench.models import ModelConfig, build_model
from workbench.tasks import make_task
from workbench.training import TRAIN_STATE_DIR, TRAIN_STATE_FILE, TrainConfig, train

FAST = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def cli(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue().strip().splitlines()


def assert_clean(rc, err):
    """Success, or exit 2 with exactly one line; never an unexpected error (exit 1)."""
    assert rc in (0, 2), err
    if rc == 2:
        assert len(err) == 1 and "Traceback" not in err[0], err


# --- task specs ---------------------------------------------------------------------------------

_ints = st.one_of(st.integers(-3, 12), st.sampled_from([0, 10**6, 10**12, 2**64]))
_arg = st.one_of(_ints.map(str), st.sampled_from(["", "x", "1.5", "-", " 3", "nan", "(0 1)", "٣"]))
_spec = st.one_of(
    st.text(max_size=12),
    st.tuples(st.sampled_from(["cyclic", "modarith", "modarith_lr", "fsm", "group"]), _arg).map(":".join),
    st.tuples(_arg, _arg, _arg).map(lambda t: f"fsm:{t[0]}:{t[1]}@{t[2]}"),
    st.sampled_from(["S", "A", "D", "Z", "Q", "Z2x", "S3xZ", "S9", "A7", "perm:"]).flatmap(
        lambda g: _arg.map(lambda a: f"group:{g}{a}")),
    st.lists(st.lists(st.integers(0, 10**7), min_size=1, max_size=3), min_size=1, max_size=2).map(
        lambda cs: "group:perm:" + "".join("(" + " ".join(map(str, c)) + ")" for c in cs)),
)


@FAST
@given(_spec)
def test_random_specs_make_a_task_or_a_value_error(spec):
    try:
        task = make_task(spec)
    except ValueError as e:
        assert str(e).strip()
        return
    assert task.d_vocab >= 1 and task.n_classes >= 1
    assert make_task(task.spec).d_vocab == task.d_vocab  # the spec it reports round-trips


# --- flags --------------------------------------------------------------------------------------

_hostile_number = st.sampled_from(["0", "-1", "-5", "nan", "inf", "-inf", "1e400", "abc", "", "1.5e9x",
                                   "99999999999999999999", "3.7", "0x10", "1,2", "--"])
_HUGE = "99999999999999999999"
#: Invalid values per option (each is refused: malformed, out of range, or far above the budget).
_BAD_TRAIN_VALUES = {
    **{f: ["0", "-1", "abc", "3.7", "nan", _HUGE, ""] for f in
       ("--hidden", "--batch", "--steps", "--layers", "--threads", "--block-size")},
    "--rank": ["0", "-1", "abc", _HUGE],
    "--state-noise": ["nan", "inf", "-1", "abc", "1e400", "100"],
    "--lr": ["nan", "0", "-1", "10", "abc", "1e400", "1e-2,nan"],
    "--weight-decay": ["nan", "-1", "100", "abc", "inf"],
    "--seed": ["-1", "abc", "3.7", _HUGE],
    "--train-lengths": ["0", "abc", "5-2", "-3", _HUGE, "100000000", "2-100000000"],
    "--eval-lengths": ["0", "abc", "10,x", "100000000", "10," + _HUGE],
    "--memory-budget": ["abc", "0", "1", "-5", "nan", "inf", "1e400", "5 parsecs"],
    "--variant": ["mamba", ""],
    "--loss": ["sum"],
}
_bad_train_flag = st.sampled_from(sorted(_BAD_TRAIN_VALUES)).flatmap(
    lambda f: st.sampled_from(_BAD_TRAIN_VALUES[f]).map(lambda v: (f, v)))


@settings(FAST, max_examples=50)
@given(_bad_train_flag, st.sampled_from(["cyclic:5", "parity", "group:S3", "fsm:4"]),
       st.sampled_from(["full", "cp", "block", "lstm"]))
def test_hostile_train_flags_exit_2_with_one_line(flag_value, task, variant):
    flag, value = flag_value
    if flag == "--block-size":
        variant = "block"  # other variants ignore the option
    extra = ["--block-size", "2"] if variant == "block" else []
    # A tiny run first, so that a value wrongly accepted fails the test in a second, not minutes.
    tiny = ["--steps", "2", "--eval-lengths", "10", "--hidden", "4"]
    with tempfile.TemporaryDirectory() as d:
        rc, _, err = cli(["train", "--task", task, "--variant", variant, *tiny, *extra, "--no-progress",
                          "--out", Path(d) / "o", flag, value])
        assert rc == 2, (flag, value, err)
        assert len(err) == 1 and "Traceback" not in err[0], err
        assert not (Path(d) / "o").exists(), "refused before anything is written"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    task = make_task("cyclic:5")
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant="full", d_vocab=5, d_hidden=6, n_classes=5, normalize=True))
    path = save_checkpoint(tmp_path_factory.mktemp("fz") / "ck", model, task.spec, {"seed": 0},
                           {"accuracy": {}})
    return path, model


@settings(FAST, max_examples=20)
@given(st.sampled_from(["--lengths", "--n", "--stride", "--seed", "--preset", "--memory-budget"]),
       st.one_of(_hostile_number, st.sampled_from(["10000000", "100000000000", "5,0", "10,100"])))
def test_hostile_eval_flags(checkpoint, flag, value):
    rc, out, err = cli(["eval", checkpoint[0], flag, value, "--n", "8"] if flag != "--n"
                       else ["eval", checkpoint[0], flag, value])
    assert_clean(rc, err)


# --- corrupted checkpoints: refused, or loaded exactly as saved ---------------------------------

_config_edits = st.sampled_from([
    ("model", "d_hidden"), ("model", "d_vocab"), ("model", "n_classes"), ("model", "normalize"),
    ("model", "variant"), ("model", "rank"), ("model", "init_noise"), ("task",), ("format_version",),
    ("weights_sha256",), ("config_sha256",), ("seed",), ("model",),
])
_values = st.one_of(st.none(), st.booleans(), st.integers(-2, 10**9), st.floats(allow_nan=True),
                    st.sampled_from(["cyclic:5", "group:Z5", "parity", "full", "cp", "x" * 64, "0" * 64]),
                    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _same_as_saved(model, task, reference):
    assert task.spec == "cyclic:5" and model.cfg == reference.cfg
    for k, v in reference.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def _copy(path):
    d = Path(tempfile.mkdtemp())
    shutil.copytree(path, d / "ck")
    return d / "ck"


@FAST
@given(_config_edits, _values)
def test_config_edits_are_refused_or_harmless(checkpoint, where, value):
    path, reference = checkpoint
    ck = _copy(path)
    try:
        conf = json.loads((ck / "config.json").read_text())
        node = conf
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = value
        try:
            text = json.dumps(conf, allow_nan=True)
        except (TypeError, ValueError):
            return
        (ck / "config.json").write_text(text)
        try:
            model, task = load_checkpoint(ck)
        except CheckpointError:
            rc, _, err = cli(["eval", ck, "--lengths", "5", "--n", "4"])
            assert rc == 2 and len(err) == 1, err
            return
        _same_as_saved(model, task, reference)  # only a no-op edit may load
    finally:
        shutil.rmtree(ck.parent)


@FAST
@given(st.sampled_from(["flip", "truncate", "append", "header"]), st.integers(0, 10**6), st.integers(1, 255))
def test_corrupted_weights_are_refused(checkpoint, how, pos, byte):
    path, reference = checkpoint
    ck = _copy(path)
    try:
        data = bytearray((ck / "model.safetensors").read_bytes())
        if how == "flip":
            data[pos % len(data)] ^= byte
        elif how == "truncate":
            data = data[: pos % len(data)]
        elif how == "append":
            data += bytes([byte]) * (1 + pos % 17)
        else:  # rewrite the length field
            data[:8] = (pos * byte).to_bytes(8, "little")
        (ck / "model.safetensors").write_bytes(bytes(data))
        with pytest.raises(CheckpointError):
            load_checkpoint(ck)
        rc, _, err = cli(["eval", ck, "--lengths", "5", "--n", "4"])
        assert rc == 2 and len(err) == 1, err
    finally:
        shutil.rmtree(ck.parent)


def test_a_consistent_rehash_of_changed_weights_is_still_detected(checkpoint):
    """Rewriting weights_sha256 after an edit changes config.json: config_sha256 catches it."""
    from workbench.checkpoints import sha256_bytes

    ck = _copy(checkpoint[0])
    try:
        sd = {k: v + 0.01 for k, v in checkpoint[1].state_dict().items()}
        blob = tensors_to_bytes(sd)
        (ck / "model.safetensors").write_bytes(blob)
        conf = json.loads((ck / "config.json").read_text())
        conf["weights_sha256"] = sha256_bytes(blob)
        (ck / "config.json").write_text(json.dumps(conf))
        with pytest.raises(CheckpointError, match="config_sha256"):
            load_checkpoint(ck)
        conf["config_sha256"] = config_sha256(conf)  # only someone re-hashing both gets through
        (ck / "config.json").write_text(json.dumps(conf))
        load_checkpoint(ck)
    finally:
        shutil.rmtree(ck.parent)


# --- corrupted training states: a warning naming the file, then a clean restart ----------------

_TINY = dict(task="parity", d_hidden=4, steps=20, eval_every=10, checkpoint_every=10, early_stop=False,
             eval_lengths=(10,), val_sequences=16, long_val_sequences=16, long_val_length=40,
             eval_sequences=16)


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def train_state(tmp_path_factory):
    """A folder interrupted after the step-10 state was written, and the uninterrupted result."""
    root = tmp_path_factory.mktemp("ts")
    ref = train(TrainConfig(**_TINY), root / "ref", progress=False)

    def stop_after_15(model):
        n = {"calls": 0}

        def hook(mod, args, out):
            if mod.training:
                n["calls"] += 1
                if n["calls"] == 15:
                    raise _Stop
        model.register_forward_hook(hook)
    with pytest.raises(_Stop):
        train(TrainConfig(**_TINY), root / "int", progress=False, init_fn=stop_after_15)
    return root / "int", ref


def _tamper_meta(path, fn):
    from safetensors.torch import load

    from workbench.checkpoints import read_safetensors_metadata

    meta = json.loads(read_safetensors_metadata(path)["workbench_train_state"])
    tensors = load(path.read_bytes())
    tensors, meta = fn(tensors, meta)
    path.write_bytes(tensors_to_bytes(tensors, metadata={"workbench_train_state": json.dumps(meta)}))


_state_damage = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("meta"), st.sampled_from(["step", "consecutive", "lr_scale", "solved", "digest", "version"]),
              st.sampled_from([None, "x", -1, 1.5, [1], True, 10**30])),
    st.tuples(st.just("drop"), st.sampled_from(["step", "rollbacks", "digest", "val_acc"])),
    st.tuples(st.just("shape"), st.sampled_from(["model.W", "model.h0", "optim.0.exp_avg", "rng.sampler"])),
)


@settings(FAST, max_examples=12)
@given(_state_damage)
def test_damaged_training_state_restarts_cleanly(train_state, damage):
    folder, ref = train_state
    work = Path(tempfile.mkdtemp()) / "run"
    shutil.copytree(folder, work)
    try:
        path = work / TRAIN_STATE_DIR / "lr=0.01" / TRAIN_STATE_FILE
        data = bytearray(path.read_bytes())
        kind = damage[0]
        if kind == "flip":
            data[damage[1] % len(data)] ^= 0xFF
            path.write_bytes(bytes(data))
        elif kind == "truncate":
            path.write_bytes(bytes(data[: damage[1] % len(data)]))
        elif kind == "meta":
            _tamper_meta(path, lambda t, m: (t, {**m, damage[1]: damage[2]}))
        elif kind == "drop":
            _tamper_meta(path, lambda t, m: (t, {k: v for k, v in m.items() if k != damage[1]}))
        else:  # a tensor of the wrong shape, with the digest recomputed so only the shape is wrong
            from workbench.training import _tensor_digest

            def reshape(t, m):
                t = {**t, damage[1]: torch.zeros(3, 5, dtype=t[damage[1]].dtype)}
                return t, {**m, "digest": _tensor_digest(t)}
            _tamper_meta(path, reshape)
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = train(TrainConfig(**_TINY), work, progress=False)
        if not res.resumed:
            assert any(str(path) in str(w.message) for w in caught), [str(w.message) for w in caught]
        for k, v in ref.model.state_dict().items():  # either way: the same finished model
            assert torch.equal(v, res.model.state_dict()[k]), k
        load_checkpoint(work)
    finally:
        shutil.rmtree(work.parent)


# --- hook returns ------------------------------------------------------------------------------

_edits = st.sampled_from(["clone", "scale", "slice_last", "slice_first", "double", "half", "int",
                          "unsqueeze", "transpose", "number", "list", "none", "view_flat"])


@pytest.fixture(scope="module")
def hooked():
    torch.manual_seed(0)
    models = {v: build_model(ModelConfig(variant=v, d_vocab=3, d_hidden=4, n_classes=3, **kw))
              for v, kw in [("full", {}), ("cp", {"rank": 3}), ("rotation", {}), ("lstm", {})]}
    return models, torch.randint(0, 3, (2, 5))


def _apply(edit, x):
    return {"clone": lambda: x.clone(), "scale": lambda: x * 0.5, "slice_last": lambda: x[..., :-1],
            "slice_first": lambda: x[:1], "double": lambda: x.double(), "half": lambda: x.half(),
            "int": lambda: x.long(), "unsqueeze": lambda: x.unsqueeze(0), "transpose": lambda: x.transpose(0, -1),
            "number": lambda: 3.0, "list": lambda: [x], "none": lambda: None,
            "view_flat": lambda: x.reshape(-1)}[edit]()


@settings(FAST, max_examples=60)
@given(st.sampled_from(["full", "cp", "rotation", "lstm"]), st.integers(0, 50), _edits)
def test_hook_returns_are_checked(hooked, variant, which, edit):
    models, tokens = hooked
    model = models[variant]
    name = sorted(model.hook_dict)[which % len(model.hook_dict)]
    seen = {}

    def hook(x, hook):
        seen["like"] = (x.shape, x.dtype)
        out = _apply(edit, x)
        seen["fits"] = out is None or (isinstance(out, torch.Tensor) and out.shape == x.shape
                                       and out.dtype == x.dtype)
        return out
    try:
        logits = model.run_with_hooks(tokens, fwd_hooks=[(name, hook)])
    except ValueError as e:
        assert not seen["fits"] and name in str(e), (name, edit, e)
        return
    assert seen["fits"], (name, edit)
    assert logits.shape == (2, 5, 3) and logits.dtype == torch.float32


@FAST
@given(st.text(min_size=1, max_size=30), st.booleans())
def test_unknown_hook_names_and_filters_list_the_hooks(hooked, name, as_list):
    model = hooked[0]["full"]
    if name in model.hook_dict:
        return
    with pytest.raises(ValueError, match="blocks.0.hook_state"):
        model.run_with_hooks(hooked[1], fwd_hooks=[(name, lambda x, hook: None)])
    with pytest.raises(ValueError, match="hook_logits"):
        model.run_with_cache(hooked[1], names_filter=[name] if as_list else name)
