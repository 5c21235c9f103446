"""Training-only state noise: off in eval, reproducible from the torch seed, same on both paths."""
import pytest
import torch

from workbench.models import ModelConfig, build_model


def _model(variant="full", **kw):
    if variant == "cp":
        kw.setdefault("rank", 4)
    torch.manual_seed(0)
    cfg = ModelConfig(variant=variant, d_vocab=3, d_hidden=8, n_classes=3, normalize=True, **kw)
    return build_model(cfg)


def _tokens():
    return torch.randint(0, 3, (4, 12), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("variant", ["full", "cp", "rotation", "real_diag"])
def test_noise_is_off_in_eval_and_on_in_train(variant):
    m = _model(variant)
    tok = _tokens()
    m.eval()
    clean = m(tok)
    m.state_noise = 0.5
    assert torch.equal(m(tok), clean)          # eval mode never perturbs
    m.train()
    torch.manual_seed(3)
    noisy = m(tok)
    assert not torch.allclose(noisy, clean, atol=1e-3)
    torch.manual_seed(3)
    assert torch.equal(m(tok), noisy)          # reproducible from the global seed


@pytest.mark.parametrize("variant", ["full", "rotation"])
def test_noise_is_the_same_on_fast_path_and_hooked_loop(variant):
    m = _model(variant)
    m.train()
    m.state_noise = 0.3
    tok = _tokens()
    torch.manual_seed(5)
    fast = m(tok)
    torch.manual_seed(5)
    # an editing hook (returning None) forces the hooked Python loop
    hooked = m.run_with_hooks(tok, fwd_hooks=[("blocks.0.hook_state", lambda h, hook: None)])
    torch.testing.assert_close(hooked, fast, rtol=1e-5, atol=1e-6)
