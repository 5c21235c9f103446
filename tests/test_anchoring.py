"""The anchor phase (workbench.anchoring) and starting from a checkpoint (TrainConfig.init_from)."""
import json

import pytest
import torch
import torch.nn.functional as F

from workbench.anchoring import anchor_loss, anchor_points, anchor_tree
from workbench.constructions import construct
from workbench.tasks import make_task
from workbench.training import TrainConfig, evaluate, train
from _configs import tiny_config


def _states(model, tokens):
    grabbed = {}

    def grab(x, hook):
        grabbed["s"] = x

    with model.hooks(fwd_hooks=[("blocks.0.hook_out", grab)]):
        model(tokens)
    return F.normalize(grabbed["s"], dim=-1)


def test_anchor_tree_reaches_every_state_by_a_shortest_word():
    task = make_task("group:S3/gens")
    order, parent = anchor_tree(task.automaton)
    A = task.automaton
    assert order[0] == A.start and sorted(order) == sorted(A.reachable())
    for i, p in enumerate(parent[1:], start=1):
        assert int(A.transitions[order[p[0]], p[1]]) == order[i] and p[0] < i


def test_anchor_points_are_the_models_states_after_the_tree_words():
    torch.manual_seed(0)
    task = make_task("cyclic:5")
    from workbench.models import build_model
    from workbench.training import model_config_for

    model = build_model(model_config_for(TrainConfig(task="cyclic:5", d_hidden=8), task))
    P = anchor_points(model, task.automaton)
    assert torch.allclose(P.norm(dim=-1), torch.ones(5), atol=1e-6)
    order, parent = anchor_tree(task.automaton)
    for i, q in enumerate(order[1:], start=1):
        word, j = [], i
        while parent[j] is not None:
            word.insert(0, parent[j][1])
            j = parent[j][0]
        s = _states(model, torch.tensor([word]))[0, -1]
        assert torch.allclose(P[q], s, atol=1e-5), (q, word)
    # differentiable: the anchors move with the weights
    P.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_anchor_loss_is_zero_spread_for_an_exact_construction_and_not_for_a_random_model():
    task = make_task("group:S3")
    exact = construct(task, "full")
    gen = torch.Generator().manual_seed(0)
    batch = task.sample(8, 60, gen)
    _, terms = anchor_loss(exact, batch, task.automaton, weight=1.0)
    assert terms.spread < 1e-10 and terms.worst < 1e-4
    from workbench.models import build_model
    from workbench.training import model_config_for

    torch.manual_seed(0)
    rand = build_model(model_config_for(TrainConfig(task="group:S3", d_hidden=8), task))
    loss, terms = anchor_loss(rand, batch, task.automaton, weight=1.0)
    assert terms.spread > 1e-3 and loss.requires_grad


_tiny = tiny_config


def test_anchor_phase_records_its_attempts_and_never_keeps_a_worse_model(tmp_path):
    cfg = _tiny(anchor_steps=30, anchor_length=20, anchor_batch=8, anchor_lr=(1e-3, 1e-2),
                anchor_val_length=200, anchor_check_every=10, anchor_skip_perfect=True)
    res = train(cfg, tmp_path / "a", progress=False)
    rec = json.loads((tmp_path / "a" / "metrics.json").read_text())["anchor"]
    assert rec == res.anchor and rec["length"] == 20
    if rec["skipped"]:
        assert rec["attempts"] == [] and rec["val_before"] == 1.0
    else:
        tried = [a["lr"] for a in rec["attempts"]]
        assert tried in ([1e-3], [1e-3, 1e-2])
        assert all(a["best_step"] in (10, 20, 30) for a in rec["attempts"])
        if rec["kept"]:
            assert rec["val_after"] >= rec["val_before"] and rec["long_val_after"] >= rec["long_val_before"]
            assert rec["val_after"] == max(a["best"] for a in rec["attempts"])
        else:
            assert (rec["val_after"], rec["lr"]) == (rec["val_before"], None)
    # its settings enter the fingerprint only when the phase is on
    assert _tiny().fingerprint() == _tiny(anchor_length=7).fingerprint()
    assert cfg.fingerprint() != _tiny(anchor_steps=30, anchor_length=21, anchor_batch=8,
                                      anchor_lr=(1e-3, 1e-2), anchor_val_length=200,
                                      anchor_check_every=10, anchor_skip_perfect=True).fingerprint()


def test_anchor_phase_makes_a_drifting_zoo_model_hold_at_length_10000(tmp_path):
    """groupS3_full_horizon_s2 solves 500 but drifts off its states by 10,000 (0.50 there); the
    phase, started from the shipped checkpoint, pulls it back (real training, ~15 s)."""
    import shutil

    from workbench.checkpoints import load_checkpoint, read_config, zoo_root

    src = zoo_root() / "zoo" / "groupS3_full_horizon_s2"
    shutil.copytree(src, tmp_path / "parent")
    parent_cfg = TrainConfig.from_dict({k: v for k, v in read_config(src)["training"].items()
                                        if k != "fingerprint"})
    task = make_task("group:S3")
    model, _ = load_checkpoint(str(src))
    before = evaluate(model, task, [10_000], 64)[10_000]
    cfg = TrainConfig.from_dict({**parent_cfg.to_dict(), "anchor_steps": 600, "anchor_lr": [1e-3],
                                 "init_from": "parent", "init_fingerprint": parent_cfg.fingerprint()})
    res = train(cfg, tmp_path / "anchored", progress=False)
    after = evaluate(res.model, task, [10_000], 64)[10_000]
    assert before < 0.9 and res.anchor["kept"] and after >= 0.99, (before, after, res.anchor)
    m = json.loads((tmp_path / "anchored" / "metrics.json").read_text())
    assert m["init_from"]["folder"] == "parent" and m["init_from"]["fingerprint"] == parent_cfg.fingerprint()


def test_init_from_checks_the_checkpoint_it_starts_from(tmp_path):
    train(_tiny(), tmp_path / "p", progress=False)
    with pytest.raises(ValueError, match="not the init_fingerprint"):
        train(_tiny(init_from="p", init_fingerprint="0" * 16), tmp_path / "c1", progress=False)
    with pytest.raises(ValueError, match="not a finished checkpoint folder"):
        train(_tiny(init_from="missing"), tmp_path / "c2", progress=False)
    with pytest.raises(ValueError, match="this run is"):
        train(_tiny(task="cyclic:5", init_from="p"), tmp_path / "c3", progress=False)
    with pytest.raises(ValueError, match="init_fingerprint needs init_from"):
        _tiny(init_fingerprint="abc")
    # no phase after it: the parent's weights and main-phase record
    parent = train(_tiny(), tmp_path / "p", progress=False)
    res = train(_tiny(init_from="p"), tmp_path / "c4", progress=False)
    assert res.steps == parent.steps and res.accuracy == parent.accuracy
    for a, b in zip(res.model.state_dict().values(), parent.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kw, msg", [
    (dict(anchor_steps=-1), "anchor_steps must be an integer >= 0"),
    (dict(anchor_length=0), "anchor_length must be a positive integer"),
    (dict(anchor_lr=()), "anchor_lr must be positive numbers"),
    (dict(anchor_weight=float("nan")), "anchor_weight must be a number"),
    (dict(anchor_steps=5, variant="lstm"), "one-layer bilinear variant"),
    (dict(anchor_skip_perfect=1), "anchor_skip_perfect must be True or False"),
])
def test_bad_anchor_options_name_the_field(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(task="cyclic:3", **kw)


def test_anchor_phase_refuses_alternating_tasks():
    task = make_task("modarith:3")
    model = construct(make_task("cyclic:3"), "full")
    from workbench.anchoring import check_anchorable

    with pytest.raises(ValueError, match="not supported on 'modarith:3'"):
        check_anchorable(task, model)
