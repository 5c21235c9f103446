"""Property tests: configurations survive JSON and a checkpoint unchanged.

A model or training configuration is written to ``config.json`` and read back on every load; a
field that does not round-trip would silently change the model that comes back.
"""
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.models import ModelConfig, build_model
from workbench.training import TrainConfig
from workbench.variants import BASELINE_VARIANTS, BILINEAR_VARIANTS, COMPLEX_VARIANTS

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True)


@st.composite
def model_configs(draw, d_vocab: int | None = None, n_classes: int | None = None):
    variant = draw(st.sampled_from(BILINEAR_VARIANTS + BASELINE_VARIANTS))
    H = 2 * draw(st.integers(1, 8))
    kw = {"variant": variant, "d_hidden": H,
          "d_vocab": d_vocab or draw(st.integers(2, 9)), "n_classes": n_classes or draw(st.integers(2, 9)),
          "d_embed": draw(st.none() | st.integers(1, 6))}
    if variant == "cp":
        kw["rank"] = draw(st.integers(1, 12))
    if variant == "block":
        kw["block_size"] = draw(st.sampled_from([b for b in (1, 2, 4, 8) if H % b == 0]))
    if variant == "positive_diag" or variant in BASELINE_VARIANTS:
        kw["n_layers"] = draw(st.integers(1, 2))
    if variant in BILINEAR_VARIANTS:
        kw["additive"] = variant == "positive_diag" or draw(st.booleans())
        kw["freeze_transition"] = draw(st.booleans())
        kw["init_noise"] = draw(st.floats(0.0, 2.0, allow_nan=False))
    kw["normalize"] = draw(st.none() | st.booleans())
    assert variant not in COMPLEX_VARIANTS or H % 2 == 0
    return ModelConfig(**kw)


@st.composite
def train_configs(draw):
    n_lr = draw(st.integers(1, 3))
    lo = draw(st.integers(1, 10))
    return TrainConfig(
        task=draw(st.sampled_from(["parity", "cyclic:5", "fsm:4@2", "group:S3/gens", "modarith:5"])),
        variant=draw(st.sampled_from(BILINEAR_VARIANTS + BASELINE_VARIANTS).filter(lambda v: v != "block")),
        d_hidden=draw(st.none() | st.sampled_from([8, 16, 32])),
        steps=draw(st.integers(1, 10_000)),
        lr=tuple(draw(st.lists(st.floats(1e-5, 1.0), min_size=n_lr, max_size=n_lr))),
        weight_decay=tuple(draw(st.lists(st.floats(0.0, 10.0), min_size=n_lr, max_size=n_lr))),
        train_lengths=(lo, lo + draw(st.integers(0, 20))),
        loss=draw(st.sampled_from(["final", "per_step"])),
        val_mode=draw(st.sampled_from(["every_step", "final"])),
        seed=draw(st.integers(0, 2**31 - 1)),
        state_noise=draw(st.floats(0.0, 0.5)),
        eval_lengths=tuple(draw(st.lists(st.integers(1, 2000), min_size=1, max_size=4))),
        polish_steps=draw(st.integers(0, 100)),
    )


@PROPERTY
@given(cfg=model_configs())
def test_model_config_round_trips_through_json(cfg):
    back = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg


@PROPERTY
@given(cfg=train_configs())
def test_train_config_round_trips_through_json(cfg):
    text = json.dumps(cfg.to_dict(), allow_nan=False)
    back = TrainConfig.from_dict(json.loads(text))
    assert back == cfg
    assert json.dumps(back.to_dict(), allow_nan=False) == text


def test_unknown_config_key_is_named():
    d = ModelConfig("full", d_vocab=3, d_hidden=4, n_classes=3).to_dict()
    with pytest.raises(ValueError, match="colour"):
        ModelConfig.from_dict({**d, "colour": "red"})


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cfg=model_configs(d_vocab=3, n_classes=3))
def test_checkpoint_round_trip_gives_the_same_model(tmp_path_factory, cfg):
    from workbench.checkpoints import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = build_model(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "m"
    save_checkpoint(path, model, "cyclic:3", {"seed": 0}, {"accuracy": {}})
    back, task = load_checkpoint(str(path))
    # The transformer baseline is a TransformerLens bridge: its .cfg is TL's, .model_config ours.
    assert (getattr(back, "model_config", None) or back.cfg) == cfg and task.spec == "cyclic:3"
    want, got = model.state_dict(), back.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    tokens = torch.randint(0, 3, (2, 7), generator=torch.Generator().manual_seed(1))
    model.eval()
    back.eval()
    assert torch.equal(model(tokens), back(tokens))
