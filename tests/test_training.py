"""Training loop: learning, determinism, resume, NaN rollback, evaluation protocols (tiny models)."""
import json
import math

import pytest
import torch

from workbench.checkpoints import load_checkpoint
from workbench.training import (
    PRESETS, TrainConfig, TrainingDivergedError, read_train_state_meta, default_hidden_size, evaluate, evaluate_preset,
    lr_at, normalized_accuracy, parse_lengths, train,
)
from _configs import tiny_config


_tiny = tiny_config


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"tensor {k} differs"


def test_learns_parity_and_generalises(tmp_path):
    cfg = TrainConfig(task="parity", d_hidden=8, steps=800, eval_every=50, val_sequences=64,
                      long_val_length=200, long_val_sequences=64, eval_lengths=(10, 200),
                      eval_sequences=128)
    res = train(cfg, tmp_path / "p", progress=False)
    assert res.accuracy[200] >= 0.99, res
    assert res.solved and res.stopped_early and res.steps < 600
    model, task = load_checkpoint(tmp_path / "p")
    assert evaluate(model, task, [200], 128) == {200: res.accuracy[200]}
    m = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert m["steps"] == res.steps and m["accuracy"]["200"] == res.accuracy[200]
    assert not (tmp_path / "p" / ".train_state").exists()


def test_same_seed_same_weights_different_seed_differs():
    a = train(_tiny(seed=1), None, progress=False).model
    b = train(_tiny(seed=1), None, progress=False).model
    c = train(_tiny(seed=2), None, progress=False).model
    _assert_same(_weights(a), _weights(b))
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


class _Interrupt(Exception):
    pass


def _interrupt_after(n_train_calls):
    """init_fn that raises on the n-th training-mode forward pass (simulated kill)."""
    def init_fn(model):
        count = {"n": 0}

        def hook(mod, args, out):
            if mod.training:
                count["n"] += 1
                if count["n"] == n_train_calls:
                    raise _Interrupt()
        model.register_forward_hook(hook)
    return init_fn


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    cfg = _tiny(steps=80)
    ref = train(cfg, tmp_path / "ref", progress=False)
    with pytest.raises(_Interrupt):
        train(cfg, tmp_path / "int", progress=False, init_fn=_interrupt_after(51))
    state = read_train_state_meta(tmp_path / "int" / ".train_state" / f"lr={cfg.lr[0]:g}")
    assert state["step"] == 40  # last periodic save before the interruption
    assert not (tmp_path / "int" / "config.json").exists()
    res = train(cfg, tmp_path / "int", progress=False)
    assert res.resumed and res.steps == 80
    _assert_same(_weights(ref.model), _weights(res.model))
    # a finished folder is reused, not retrained
    again = train(cfg, tmp_path / "int", progress=False)
    assert again.reused and again.accuracy == res.accuracy


def test_resume_ignores_state_of_a_different_config(tmp_path):
    with pytest.raises(_Interrupt):
        train(_tiny(steps=80), tmp_path / "r", progress=False, init_fn=_interrupt_after(45))
    with pytest.warns(UserWarning, match="different training config"):
        res = train(_tiny(steps=80, seed=5), tmp_path / "r", progress=False)
    assert not res.resumed and res.steps == 80


def _nan_on_calls(calls):
    def init_fn(model):
        count = {"n": 0}

        def hook(mod, args, out):
            if mod.training:
                count["n"] += 1
                if count["n"] in calls:
                    return out * float("nan")
        model.register_forward_hook(hook)
    return init_fn


def test_nan_rolls_back_and_halves_lr(tmp_path):
    res = train(_tiny(steps=60), tmp_path / "n", progress=False, init_fn=_nan_on_calls({30}))
    assert res.lr_runs[0].nan_rollbacks == 1 and res.steps == 60
    model, _ = load_checkpoint(tmp_path / "n")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_persistent_nan_gives_up_without_writing(tmp_path):
    with pytest.raises(TrainingDivergedError, match="diverged .* no checkpoint was written"):
        train(_tiny(max_nan_retries=2), tmp_path / "bad", progress=False,
              init_fn=_nan_on_calls(set(range(5, 1000))))
    assert not (tmp_path / "bad" / "config.json").exists()
    assert not (tmp_path / "bad" / "model.safetensors").exists()


def test_lr_grid_keeps_best_on_validation():
    res = train(_tiny(lr=(1e-4, 3e-3), steps=40), None, progress=False)
    assert [r.lr for r in res.lr_runs] == [1e-4, 3e-3]
    best = max(res.lr_runs, key=lambda r: (r.solved, r.long_val_accuracy, r.val_accuracy, -r.final_loss))
    assert res.lr == best.lr


def test_final_loss_option_runs():
    res = train(_tiny(loss="final", steps=20), None, progress=False)
    assert math.isfinite(res.final_loss)


def test_evaluate_and_presets():
    res = train(_tiny(steps=20), None, progress=False)
    from workbench.tasks import make_task

    task = make_task("cyclic:3")
    model = res.model
    model.train()
    acc = evaluate(model, task, [5, 12], n_sequences=40, seed=0)
    assert model.training, "evaluate must restore the training flag"
    assert set(acc) == {5, 12} and all(0 <= a <= 1 for a in acc.values())
    assert acc == evaluate(model, task, [5, 12], n_sequences=40, seed=0, chunk=7)
    sc = evaluate_preset(model, task, "deletang", stride=230, n_sequences=16)
    assert sc.lengths_evaluated == 3 and set(sc.accuracy) == {41, 271, 500}
    assert sc.score == pytest.approx(sum(sc.accuracy.values()) / 3)
    assert PRESETS["paper"].train_lengths == (2, 10)
    with pytest.raises(ValueError, match="unknown preset 'x'; accepted: paper, deletang"):
        evaluate_preset(model, task, "x")


def test_normalized_accuracy():
    assert normalized_accuracy(1.0, 0.2) == 1.0
    assert normalized_accuracy(0.2, 0.2) == 0.0
    assert normalized_accuracy(0.6, 0.5) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="chance"):
        normalized_accuracy(0.5, 1.0)


def test_schedule_and_rules():
    cfg = TrainConfig(task="cyclic:5", steps=100)
    assert lr_at(0, cfg, 3e-3) == pytest.approx(3e-3)
    assert lr_at(100, cfg, 3e-3) == pytest.approx(3e-5)
    assert lr_at(50, cfg, 3e-3) == pytest.approx((3e-3 + 3e-5) / 2)
    from workbench.tasks import make_task

    assert default_hidden_size(make_task("cyclic:5")) == 16
    assert default_hidden_size(make_task("cyclic:25")) == 32
    assert default_hidden_size(make_task("cyclic:50")) == 64
    assert parse_lengths("2-10") == (2, 10) and parse_lengths("7") == (7, 7)


@pytest.mark.parametrize("kw,msg", [
    (dict(variant="mamba"), "unknown variant 'mamba'"),
    (dict(lr=(-1.0,)), "lr must be positive"),
    (dict(train_lengths=(5, 2)), "train_lengths"),
    (dict(loss="sum"), "loss must be"),
    (dict(steps=0), "steps must be a positive integer"),
    (dict(variant="block"), "block_size"),
])
def test_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(task="cyclic:3", **kw)
    with pytest.raises(ValueError, match="bad length range"):
        parse_lengths("2..10")


def test_config_round_trip():
    cfg = _tiny(lr=(1e-3, 3e-3))
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.fingerprint() == cfg.fingerprint()
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"task": "parity", "stepz": 3})


# --- polish phase ---------------------------------------------------------------------------

def test_polish_off_by_default_and_old_fingerprints_kept():
    cfg = _tiny()
    assert cfg.polish_steps == 0
    # A config written before the polish fields existed (no polish_* keys) has the same
    # fingerprint, so finished zoo checkpoints are still recognised.
    old = {k: v for k, v in cfg.to_dict().items() if not k.startswith("polish_")}
    assert TrainConfig.from_dict(old).fingerprint() == cfg.fingerprint()
    # Polish settings cannot matter while polish is off ...
    assert _tiny(polish_lr=1e-2, polish_weight_decay=1.0).fingerprint() == cfg.fingerprint()
    # ... and do once it is on.
    on = _tiny(polish_steps=10)
    assert on.fingerprint() != cfg.fingerprint()
    assert _tiny(polish_steps=10, polish_lr=1e-2).fingerprint() != on.fingerprint()
    back = TrainConfig.from_dict(json.loads(json.dumps(on.to_dict())))
    assert back == on and back.fingerprint() == on.fingerprint()


def test_zoo_checkpoint_fingerprint_unchanged():
    from pathlib import Path

    from workbench.checkpoints import read_config

    ckpt = Path(__file__).resolve().parents[1] / "checkpoints" / "zoo" / "groupS3_full_s0"
    if not (ckpt / "config.json").exists():
        pytest.skip("zoo checkpoint not built here")
    conf = read_config(ckpt)["training"]
    stored = conf.pop("fingerprint")
    assert TrainConfig.from_dict(conf).fingerprint() == stored


@pytest.mark.parametrize("kw,msg", [
    (dict(polish_steps=-1), "polish_steps"),
    (dict(polish_lr=0.0), "polish_lr"),
    (dict(polish_weight_decay=-1.0), "polish_weight_decay"),
    (dict(polish_loss="sum"), "polish_loss"),
    (dict(polish_train_lengths=(9, 3)), "polish_train_lengths"),
])
def test_polish_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(task="cyclic:3", **kw)


def test_polish_runs_is_deterministic_and_recorded(tmp_path):
    cfg = _tiny(polish_steps=15, polish_loss="per_step", polish_train_lengths=(2, 12))
    a = train(cfg, None, progress=False)
    b = train(cfg, None, progress=False)
    _assert_same(_weights(a.model), _weights(b.model))
    p = a.polish
    assert p is not None and p == {**b.polish, "train_time_s": p["train_time_s"]}
    assert p["steps"] == 15 and p["weight_decay"] == cfg.polish_weight_decay and p["loss"] == "per_step"
    assert p["kept"] == (p["long_val_accuracy"] >= p["long_val_accuracy_before"])
    # The polish changed the weights (when kept) relative to the same run without it.
    plain = train(_tiny(), None, progress=False)
    assert plain.polish is None
    if p["kept"]:
        assert any(not torch.equal(x, y) for x, y in zip(_weights(a.model).values(),
                                                         _weights(plain.model).values(), strict=True))
    else:
        _assert_same(_weights(a.model), _weights(plain.model))
    # Written to metrics.json and read back when the finished checkpoint is reused.
    res = train(cfg, tmp_path / "c", progress=False)
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert metrics["polish"]["steps"] == 15
    again = train(cfg, tmp_path / "c", progress=False)
    assert again.reused and again.polish["steps"] == 15
    _assert_same(_weights(res.model), _weights(again.model))


class _RightOnlyEvery(torch.nn.Module):
    """Parity 'model' that is right at steps that are multiples of `period` and wrong elsewhere:
    the planted length-gamer that final-step validation at those lengths cannot see."""

    def __init__(self, period):
        super().__init__()
        self.period = period

    def forward(self, tokens):
        parity = torch.cumsum(tokens, dim=1) % 2
        steps = torch.arange(1, tokens.shape[1] + 1)
        pred = torch.where(steps % self.period == 0, parity, 1 - parity)
        return torch.nn.functional.one_hot(pred, 2).float()


def test_validation_every_step_sees_a_model_right_only_at_the_validation_length():
    from workbench.tasks import make_task
    from workbench.training import validation_accuracy

    task = make_task("parity")
    gamer = _RightOnlyEvery(50)
    assert validation_accuracy(gamer, task, 50, 64, mode="final") == 1.0
    assert validation_accuracy(gamer, task, 100, 64, mode="final") == 1.0
    assert validation_accuracy(gamer, task, 50, 64, mode="every_step") == pytest.approx(1 / 50)
    assert validation_accuracy(gamer, task, 100, 64, mode="every_step", chunk=7) == pytest.approx(2 / 100)
    honest = _RightOnlyEvery(1)
    assert validation_accuracy(honest, task, 1000, 16) == 1.0  # every_step is the default
    with pytest.raises(ValueError, match="every_step"):
        validation_accuracy(honest, task, 50, 16, mode="last")


def test_val_mode_is_checked_and_changes_the_fingerprint():
    with pytest.raises(ValueError, match="val_mode"):
        TrainConfig(task="parity", val_mode="sometimes")
    a = TrainConfig(task="parity")
    assert a.val_mode == "every_step" and a.long_val_length == 1000
    assert a.fingerprint() != TrainConfig(task="parity", val_mode="final").fingerprint()


def test_configs_written_before_val_mode_read_as_final_step_validation():
    d = TrainConfig(task="parity", val_mode="final").to_dict()
    d.pop("val_mode")
    old = TrainConfig.from_dict(d)
    assert old.val_mode == "final"
    assert old.fingerprint() == TrainConfig(task="parity", val_mode="final").fingerprint()


def test_every_step_validation_of_an_exact_modarith_model_is_perfect():
    # Only whole expressions are scored: the exact construction is right at all of them.
    from workbench.constructions import construct
    from workbench.tasks import make_task
    from workbench.training import validation_accuracy

    task = make_task("modarith:5")
    assert validation_accuracy(construct(task, "full"), task, 60, 16) == 1.0
