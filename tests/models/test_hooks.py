"""Hook contract: caching (steps=, memory guard), run_with_hooks / hooks(), TL patching, bad input."""
import pandas as pd
import pytest
import torch
from transformer_lens.patching import generic_activation_patch, layer_pos_patch_setter

from workbench.models import ModelConfig, build_model, state_patch_setter

from .conftest import make


def test_steps_keeps_selected_steps(tokens):
    m = make("full").eval()
    _, full = m.run_with_cache(tokens)
    _, part = m.run_with_cache(tokens, steps=[2, -1, 5])
    assert part.steps == [2, 5, 9]
    for name in ("blocks.0.hook_state", "hook_logits", "blocks.0.hook_transition", "hook_embed"):
        torch.testing.assert_close(part[name], full[name][:, [1, 4, 8]])
    assert part["blocks.0.hook_h0"].shape == (3, 8)
    assert part.step_index(5) == 1
    with pytest.raises(ValueError, match="step=3 was not cached"):
        part.step_index(3)
    # the hooked loop path records per step too
    with m.hooks(fwd_hooks=[("blocks.0.hook_state", lambda x, hook: None)]):
        _, looped = m.run_with_cache(tokens, steps=range(2, 4))
    torch.testing.assert_close(looped["blocks.0.hook_state"], full["blocks.0.hook_state"][:, 1:3])
    for bad in (0, 10, [1.5], "3", []):
        with pytest.raises(ValueError, match="step"):
            m.run_with_cache(tokens, steps=bad)


def test_names_filter_forms(tokens):
    m = make("cp", rank=4).eval()
    for nf in ("blocks.0.hook_state", ["blocks.0.hook_state"], lambda n: n == "blocks.0.hook_state"):
        _, c = m.run_with_cache(tokens, names_filter=nf)
        assert list(c.keys()) == ["blocks.0.hook_state"]
    assert c["state", 0].shape == (3, 9, 8)   # TL shorthand
    _, c = m.run_with_cache(tokens, names_filter="blocks.0.hook_gates")
    assert c["blocks.0.hook_gates"].shape == (3, 9, 4)


def test_memory_guard_refuses_before_running():
    m = make("full", H=64).eval()
    calls = []
    m.add_hook("hook_logits", lambda x, hook: calls.append(1))
    tok = torch.zeros(64, 600, dtype=torch.long)
    with pytest.raises(ValueError) as err:
        m.run_with_cache(tok, max_cache_bytes=50 * 2**20)
    msg = str(err.value)
    assert "blocks.0.hook_transition [64, 600, 64, 64]" in msg and "600.00 MiB" in msg
    assert "max_cache_bytes" in msg
    assert calls == []                       # refused before any forward
    m.reset_hooks()
    _, c = m.run_with_cache(tok, names_filter="blocks.0.hook_state", max_cache_bytes=50 * 2**20)
    assert c["blocks.0.hook_state"].shape == (64, 600, 64)
    # the default limit (1 GiB) refuses the full transition cache of a bigger run
    with pytest.raises(ValueError, match="hook_transition"):
        m.run_with_cache(torch.zeros(128, 600, dtype=torch.long))


def test_cache_of_states_uses_fast_path(tokens, monkeypatch):
    """Caching hook_state must not fire per-step Python hooks (cost <= 1.3x a forward)."""
    m = make("full").eval()
    fired = []
    monkeypatch.setattr(m, "fire_step", lambda *a: fired.append(a) or a[1])
    m.run_with_cache(tokens, names_filter="blocks.0.hook_state")
    assert fired == []


def test_run_with_hooks_and_hooks_context_remove_hooks(tokens):
    m = make("rotation").eval()
    seen = []
    hook = lambda x, hook: seen.append((hook.name, hook.ctx.get("t"), tuple(x.shape)))
    m.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_state", hook), ("blocks.0.hook_out", hook)])
    assert [s[1] for s in seen if s[0] == "blocks.0.hook_state"] == list(range(1, 10))
    assert all(s[2] == (3, 8) for s in seen if s[0] == "blocks.0.hook_state")
    assert ("blocks.0.hook_out", None, (3, 9, 8)) in seen
    assert not any(hp.fwd_hooks for hp in m.hook_dict.values())
    with m.hooks(fwd_hooks=[("blocks.0.hook_angles", lambda x, hook: x * 0)]):
        zeroed = m(tokens)
    # all angles 0: identity transitions, every state is h0 (normalized)
    assert torch.allclose(zeroed, zeroed[:, :1].expand_as(zeroed), atol=1e-6)
    assert not any(hp.fwd_hooks for hp in m.hook_dict.values())
    assert not torch.allclose(m(tokens), zeroed)


def test_tl_generic_activation_patch(tokens):
    m = make("full").eval()
    clean = tokens
    corrupted = tokens.clone()
    corrupted[:, 0] = (corrupted[:, 0] + 1) % 5
    clean_logits, cache = m.run_with_cache(clean)
    corrupted_logits = m(corrupted)
    metric = lambda logits: (logits[:, -1] - clean_logits[:, -1]).abs().max()
    gap = float(metric(corrupted_logits.detach()))
    assert gap > 1e-4
    assert m.cfg.n_layers == 1 and m.cfg.n_heads == 1 and m.cfg.device == "cpu"
    # hook_out: patching position p restores the readout at p only (final position: p = T-1)
    out = generic_activation_patch(m, corrupted, cache, metric, layer_pos_patch_setter, "out",
                                   index_axis_names=("layer", "pos"))
    assert out.shape == (1, 9)
    assert out[0, -1] < 1e-6 and torch.allclose(out[0, :-1], torch.full((8,), gap), rtol=1e-5)
    # hook_state, per step: the clean state at any step restores everything after it
    # (the sequences differ only in token 1)
    res = generic_activation_patch(m, corrupted, cache, metric,
                                   state_patch_setter(m, "blocks.0.hook_state"), "state",
                                   index_axis_names=("layer", "pos"))
    assert (res < 1e-5).all()
    # hook_embed has no layer: give an index_df whose layer column is None
    df = pd.DataFrame({"layer": [None] * 9, "pos": list(range(9))})
    emb = generic_activation_patch(m, corrupted, cache, metric, layer_pos_patch_setter,
                                   "hook_embed", index_df=df)
    assert emb[0] < 1e-5 and torch.allclose(emb[1:], torch.full((8,), gap), rtol=1e-5)
    # everything patched back (all positions of hook_embed) = clean logits
    every = lambda x, hook: cache["hook_embed"]
    torch.testing.assert_close(m.run_with_hooks(corrupted, fwd_hooks=[("hook_embed", every)]), clean_logits)


def test_tl_patching_on_baseline(tokens):
    m = make("lstm").eval()
    clean_logits, cache = m.run_with_cache(tokens)
    corrupted = tokens.clone()
    corrupted[:, 0] = (corrupted[:, 0] + 2) % 5
    metric = lambda logits: (logits[:, -1] - clean_logits[:, -1]).abs().max()
    out = generic_activation_patch(m, corrupted, cache, metric, layer_pos_patch_setter, "out",
                                   index_axis_names=("layer", "pos"))
    assert out[0, -1] < 1e-6


def test_patching_requires_eval_mode(tokens):
    m = make("full").train()
    _, cache = m.run_with_cache(tokens)
    with pytest.raises(ValueError, match="evaluation"):
        generic_activation_patch(m, tokens, cache, lambda l: l.sum(), layer_pos_patch_setter,
                                 "out", index_axis_names=("layer", "pos"))


@pytest.mark.parametrize("bad,match", [
    (torch.tensor([[0, 5]]), "token value 5 is out of range; accepted: 0..4"),
    (torch.tensor([[-1, 0]]), "token value -1"),
    (torch.zeros(2, 3), "dtype torch.float32"),
    (torch.zeros(3, dtype=torch.long), r"shape \(3,\)"),
    (torch.zeros(2, 0, dtype=torch.long), "batch and time"),
    ([[0, 1]], "torch.Tensor"),
])
def test_bad_tokens(bad, match):
    with pytest.raises(ValueError, match=match):
        make("full")(bad)


@pytest.mark.parametrize("kw,match", [
    (dict(variant="fulll"), "variant='fulll' is unknown; accepted: full, cp"),
    (dict(variant="full", rank=3), "rank=3 given for variant 'full'"),
    (dict(variant="cp"), "rank=None"),
    (dict(variant="rotation", d_hidden=7), "d_hidden=7 is odd"),
    (dict(variant="complex_diag", d_hidden=5), "odd"),
    (dict(variant="block", block_size=3), r"block_size=3 does not divide d_hidden=8; accepted: one of \[1, 2, 4, 8\]"),
    (dict(variant="full", n_layers=2), "n_layers=2"),
    (dict(variant="full", d_hidden=0), "d_hidden=0"),
    (dict(variant="lstm", additive=True), "additive=True for baseline"),
    (dict(variant="full", normalize="yes"), "normalize='yes'"),
])
def test_bad_config(kw, match):
    base = dict(d_vocab=5, d_hidden=8, n_classes=3)
    base.update(kw)
    with pytest.raises(ValueError, match=match):
        ModelConfig(**base)


def test_config_roundtrip_and_build_errors():
    cfg = ModelConfig("cp", 5, 8, 3, rank=4, normalize=True)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert "device" not in cfg.to_dict()
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "hidden": 3})
    with pytest.raises(ValueError, match="ModelConfig"):
        build_model({"variant": "full"})


def test_transformer_runs_long():
    m = make("transformer").eval()
    with torch.no_grad():
        out = m(torch.randint(0, 5, (1, 600)))
    assert out.shape == (1, 600, 3) and torch.isfinite(out).all()
