"""The transformer baseline as a TransformerLens model: TL hooks and utilities, workbench hooks,
training and checkpoints, and the exact conversion of the earlier baseline's checkpoints."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from transformer_lens import ActivationCache, patching
from transformer_lens.model_bridge import TransformerBridge

from workbench.checkpoints import load_checkpoint, save_checkpoint, zoo_root
from workbench.models import ModelConfig, build_model
from workbench.models.transformer import (INITIAL_N_CTX, legacy_reference_forward,
                                          upgrade_legacy_state_dict)

from .conftest import make


def _model(**kw):
    return make("transformer", n_layers=2, **kw).eval()


def test_is_a_transformer_lens_bridge_with_attention_hooks(tokens):
    m = _model()
    assert isinstance(m, TransformerBridge)
    logits, cache = m.run_with_cache(tokens)
    assert isinstance(cache, ActivationCache)
    heads = m.cfg.n_heads
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert pattern.shape == (3, heads, 9, 9)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(3, heads, 9))
    assert pattern.triu(diagonal=1).abs().max() == 0            # causal
    for name in ("blocks.1.attn.hook_q", "blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out"):
        assert name in cache
    # the workbench vocabulary, with its meaning
    torch.testing.assert_close(cache["blocks.1.hook_state"], cache["blocks.1.hook_resid_post"])
    torch.testing.assert_close(cache["hook_logits"], logits)
    assert cache["hook_embed"].shape == (3, 9, m.cfg.d_hidden)
    assert m.cfg.variant == "transformer" and m.model_config.n_classes == 3


def test_transformer_lens_utilities_work_on_it(tokens):
    m = _model()
    _, cache = m.run_with_cache(tokens)
    resid, labels = cache.decompose_resid(return_labels=True)
    assert resid.shape[0] == len(labels) and resid.shape[1:] == (3, 9, m.cfg.d_hidden)
    assert m.W_Q.shape == (2, m.cfg.n_heads, m.cfg.d_hidden, m.cfg.d_head)
    corrupted = tokens.flip(0)
    _, clean_cache = m.run_with_cache(tokens)

    def metric(logits):
        return logits[:, -1].log_softmax(-1)[:, 0].mean()

    result = patching.get_act_patch_resid_pre(m, corrupted, clean_cache, metric)
    assert result.shape == (2, 9)
    with torch.no_grad():
        # patching every position of the residual before layer 0 restores the clean run
        full = m.run_with_hooks(corrupted, fwd_hooks=[(
            "blocks.0.hook_resid_pre", lambda x, hook: clean_cache["blocks.0.hook_resid_pre"])])
    torch.testing.assert_close(metric(full), metric(m(tokens)))


def test_editing_hook_state_propagates_causally(tokens):
    m = _model()
    with torch.no_grad():
        clean = m(tokens)

        def edit(x, hook):
            x = x.clone()
            x[:, 4] = 0.0
            return x

        edited = m.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_state", edit)])
    change = (edited - clean).abs().amax((0, 2))
    assert change[:4].max() == 0 and change[4:].min() > 0


def test_runs_beyond_the_initial_context():
    m = _model()
    with torch.no_grad():
        long = torch.randint(0, 5, (1, INITIAL_N_CTX + 5))
        out = m(long)
        again = m(long[:, :50])
    assert out.shape == (1, INITIAL_N_CTX + 5, 3) and torch.isfinite(out).all()
    torch.testing.assert_close(again, out[:, :50], atol=1e-5, rtol=1e-5)   # causal: prefixes agree
    assert m.cfg.n_ctx >= INITIAL_N_CTX + 5


def test_bad_input_and_return_type(tokens):
    m = _model()
    with pytest.raises(ValueError, match="token value 7 is out of range"):
        m(torch.tensor([[0, 7]]))
    with pytest.raises(ValueError, match="return_type='loss'"):
        m(tokens, return_type="loss")
    assert m(tokens, return_type=None) is None


def test_trains_saves_and_loads(tmp_path, tokens):
    from workbench.training import TrainConfig, train

    cfg = TrainConfig(task="cyclic:3", variant="transformer", d_hidden=8, n_layers=1, steps=20,
                      eval_lengths=(10,), val_length=20, val_sequences=32, long_val_length=40,
                      long_val_sequences=32, eval_sequences=64, seed=0)
    res = train(cfg, tmp_path / "ck", progress=False)
    loaded, _ = load_checkpoint(tmp_path / "ck")
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens[:, :9] % 3), res.model.eval()(tokens[:, :9] % 3))
    conf = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert conf["model"]["variant"] == "transformer"
    from safetensors import safe_open
    with safe_open(str(tmp_path / "ck" / "model.safetensors"), "pt") as f:
        assert "pos_embed.weight" not in f.keys() and "blocks.0.attn.hook_pattern" not in f.keys()


def _legacy_tensors(cfg: ModelConfig, seed=0):
    """Random weights under the earlier nn.TransformerEncoderLayer baseline's names."""
    torch.manual_seed(seed)
    H = cfg.d_hidden
    t = {"W_E": torch.randn(cfg.d_vocab, H), "ln_final.weight": 1 + 0.1 * torch.randn(H),
         "ln_final.bias": 0.1 * torch.randn(H), "W_U": torch.randn(H, cfg.n_classes),
         "b_U": torch.randn(cfg.n_classes)}
    for l in range(cfg.n_layers):
        layer = nn.TransformerEncoderLayer(H, cfg.n_heads, 4 * H, dropout=0.0, batch_first=True,
                                           norm_first=True)
        for k, v in layer.state_dict().items():
            t[f"layers.{l}.{k}"] = v + 0.1 * torch.randn_like(v)   # biases and norms non-trivial
    return t


def test_legacy_checkpoint_converts_exactly(tmp_path, tokens):
    cfg = ModelConfig("transformer", 5, 8, 3, n_layers=2)
    legacy = _legacy_tensors(cfg)
    m = build_model(cfg).eval()
    m.load_state_dict(upgrade_legacy_state_dict(legacy, cfg.n_layers), strict=True)
    long = torch.randint(0, 5, (4, 300), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for tk in (tokens, long):
            ref = legacy_reference_forward(legacy, cfg, tk)
            torch.testing.assert_close(m(tk), ref, atol=1e-5, rtol=1e-5)
    # and through a checkpoint written in the old format
    from workbench.checkpoints import tensors_to_bytes, sha256_bytes
    ck = save_checkpoint(tmp_path / "ck", m, "fsm:3:5", {"seed": 0}, {"accuracy": {}})
    blob = tensors_to_bytes(legacy, metadata={"format": "pt", "workbench_format": "1"})
    (ck / "model.safetensors").write_bytes(blob)
    conf = json.loads((ck / "config.json").read_text())
    conf["weights_sha256"] = sha256_bytes(blob)
    (ck / "config.json").write_text(json.dumps(conf))
    loaded, _ = load_checkpoint(ck)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), legacy_reference_forward(legacy, cfg, tokens),
                                   atol=1e-5, rtol=1e-5)


ZOO_TRANSFORMER = "fsm5_transformer_s0"


@pytest.mark.skipif(not (zoo_root() / "zoo" / ZOO_TRANSFORMER).is_dir(),
                    reason="shipped zoo not present")
def test_zoo_transformer_reproduces_its_recorded_accuracy():
    from workbench.training import evaluate

    model, task = load_checkpoint(ZOO_TRANSFORMER)
    recorded = json.loads(Path(zoo_root() / "zoo" / ZOO_TRANSFORMER / "metrics.json").read_text())
    acc = evaluate(model, task, [10], n_sequences=512, seed=0)
    assert acc[10] == recorded["accuracy"]["10"]
