"""HookedBilinearRNN: shapes, parity of fast path and hooked loop, propagation, normalization."""
import pytest
import torch


from .conftest import BASELINES, BILINEAR, make

ALL = BILINEAR + BASELINES


@pytest.mark.parametrize("variant,kw", ALL)
def test_shapes_and_cache_shapes(variant, kw, tokens):
    m = make(variant, **kw).eval()
    logits = m(tokens)
    assert logits.shape == (3, 9, 3)
    assert torch.isfinite(logits).all()
    _, cache = m.run_with_cache(tokens)
    expected = m.hook_shapes(3, 9)
    if variant == "transformer":   # TransformerLens's own hooks besides the workbench's
        assert set(expected) <= set(cache.keys()) <= set(m.hook_dict)
        assert "blocks.0.attn.hook_pattern" in cache
    else:
        assert set(cache.keys()) == set(expected) == set(m.hook_dict)
    for name, shape in expected.items():
        assert tuple(cache[name].shape) == shape, name
    torch.testing.assert_close(cache["hook_logits"], logits.detach())


def _identity_state_hook(x, hook):
    return x  # an "editing" hook that edits nothing: forces the hooked loop


# (variant, kw, additive): positive_diag is always additive, so it appears once.
WITH_ADDITIVE = [(v, kw, a) for v, kw in BILINEAR for a in (False, True)
                 if not (v == "positive_diag" and a)]


@pytest.mark.parametrize("variant,kw,additive", WITH_ADDITIVE)
@pytest.mark.parametrize("normalize", [False, True])
def test_parity_fast_vs_hooked_loop(variant, kw, normalize, additive, tokens):
    """Forward and the gradients of every parameter agree to 1e-5 relative (float64)."""
    m = make(variant, additive=additive, **kw).double().train()
    params = [p for p in m.parameters() if p.requires_grad]

    def run(hooked):
        hooks = [(lambda n: n.endswith("hook_state"), _identity_state_hook)] if hooked else []
        out = m.run_with_hooks(tokens, normalize=normalize, fwd_hooks=hooks)
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()
        return out.detach(), torch.autograd.grad(loss, params)

    fast, gfast = run(False)
    slow, gslow = run(True)
    rel = lambda a, b: float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
    assert rel(fast, slow) < 1e-5, rel(fast, slow)
    for (name, _), a, b in zip([(n, p) for n, p in m.named_parameters() if p.requires_grad], gfast, gslow, strict=True):
        assert rel(a, b) < 1e-5, (name, rel(a, b))


@pytest.mark.parametrize("variant,kw", BILINEAR + [("lstm", {}), ("gru", {}), ("elman", {})])
def test_editing_state_propagates_forward_only(variant, kw, tokens):
    m = make(variant, **kw).eval()
    _, clean = m.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_state"))
    t_edit = 4
    last = f"blocks.{m.cfg.n_layers - 1}.hook_state"

    def edit(x, hook):
        if hook.ctx["t"] == t_edit and hook.name == "blocks.0.hook_state":
            return x.flip(-1) * 0.5 + 0.1
        return None

    with m.hooks(fwd_hooks=[("blocks.0.hook_state", edit)]):
        _, cache = m.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_state"))
    for name in (n for n in cache.keys()):
        a, b = cache[name], clean[name]
        torch.testing.assert_close(a[:, : t_edit - 1], b[:, : t_edit - 1], rtol=1e-5, atol=1e-6)
    a, b = cache[last], clean[last]
    diff = (a - b).abs().amax(dim=(0, 2))
    assert (diff[t_edit - 1:] > 1e-4).all(), diff   # the edited step and every later one


@pytest.mark.parametrize("variant,kw", [("full", {}), ("real_diag", {}), ("lstm", {}), ("transformer", {})])
def test_editing_hook_out_changes_only_the_readout(variant, kw, tokens):
    m = make(variant, **kw).eval()
    clean_logits, clean = m.run_with_cache(tokens)
    L = m.cfg.n_layers - 1
    out_name = f"blocks.{L}.hook_out"

    def edit(x, hook):
        x = x.clone()
        x[:, 2] = 0.0
        return x

    with m.hooks(fwd_hooks=[(out_name, edit)]):
        logits, cache = m.run_with_cache(tokens)
    torch.testing.assert_close(cache[f"blocks.{L}.hook_state"], clean[f"blocks.{L}.hook_state"])
    changed = (logits - clean_logits).abs().amax(dim=(0, 2))
    assert changed[2] > 1e-6 and torch.all(changed[torch.arange(9) != 2] == 0)


def test_edit_of_embedding_and_transition_propagates(tokens):
    m = make("full").eval()
    base = m(tokens)
    zero_first = lambda x, hook: torch.cat([x[:, :1] * 0 + 1 / 5, x[:, 1:]], 1)
    for name in ("hook_embed", "blocks.0.hook_transition"):
        if name == "blocks.0.hook_transition":
            eye = lambda x, hook: torch.cat([torch.eye(8).expand(3, 1, 8, 8), x[:, 1:]], 1)
            hook = eye
        else:
            hook = zero_first
        out = m.run_with_hooks(tokens, fwd_hooks=[(name, hook)])
        assert (out - base).abs().amax(dim=(0, 2))[-1] > 1e-6
    # identity transition at step 1 means h_1 = normalized h0
    _, cache = None, None
    with m.hooks(fwd_hooks=[("blocks.0.hook_transition", eye)]):
        _, cache = m.run_with_cache(tokens, names_filter="blocks.0.hook_state")
    h0 = m.h0 / m.h0.norm()
    torch.testing.assert_close(cache["blocks.0.hook_state"][:, 0], h0.detach().expand(3, 8))


@pytest.mark.parametrize("variant,kw", BILINEAR)
def test_param_hook_edit_equals_weight_edit(variant, kw, tokens):
    """Scaling the variant's parameter hook by 1 via an editing hook runs the loop: same logits."""
    m = make(variant, **kw).double().eval()
    name = "blocks.0.hook_transition" if m.param_hook is None else f"blocks.0.{m.param_hook}"
    base = m(tokens)
    out = m.run_with_hooks(tokens, fwd_hooks=[(name, lambda x, hook: x * 1.0)])
    torch.testing.assert_close(out, base, rtol=1e-9, atol=1e-12)


def test_transition_matrices_match_one_step(tokens):
    for variant, kw in BILINEAR:
        m = make(variant, **kw).double().eval()
        A = m.transition_matrices()
        assert A.shape == (5, 8, 8)
        _, cache = m.run_with_cache(tokens, names_filter="blocks.0.hook_state", normalize=False)
        if variant == "positive_diag":
            blk = m.blocks[0]
            h0 = blk.h0
            expect = torch.einsum("bij,j->bi", A[tokens[:, 0]], h0) + blk.W_B[tokens[:, 0]] + blk.b_B
        else:
            expect = torch.einsum("bij,j->bi", A[tokens[:, 0]], m.h0)
        torch.testing.assert_close(cache["blocks.0.hook_state"][:, 0], expect.detach(), rtol=1e-9, atol=1e-12)


def test_set_transition_matrices_roundtrip():
    m = make("full").double()
    A = torch.randn(5, 8, 8, dtype=torch.float64)
    m.set_transition_matrices(A)
    torch.testing.assert_close(m.transition_matrices(), A)
    m2 = make("full", d_embed=6).double()
    m2.set_transition_matrices(A)
    torch.testing.assert_close(m2.transition_matrices(), A, rtol=1e-8, atol=1e-8)
    m3 = make("full", d_embed=3)
    with pytest.raises(ValueError, match="residual"):
        m3.set_transition_matrices(torch.randn(5, 8, 8))
    with pytest.raises(ValueError, match=r"\[5, 8, 8\]"):
        m.set_transition_matrices(torch.randn(5, 8, 7))
    with pytest.raises(ValueError, match="'full'"):
        make("cp", rank=4).set_transition_matrices(A)
    with pytest.raises(ValueError, match="bilinear family only"):
        make("lstm").transition_matrices()


@pytest.mark.parametrize("variant,kw,additive", WITH_ADDITIVE)
def test_length_10000_finite(variant, kw, additive):
    m = make(variant, additive=additive, **kw).eval()
    g = torch.Generator().manual_seed(2)
    tok = torch.randint(0, 5, (2, 10_000), generator=g)
    with torch.no_grad():
        logits = m(tok)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("variant,kw", [b for b in BILINEAR if b[0] != "positive_diag"])
def test_normalization_keeps_predictions(variant, kw, tokens):
    """Without the additive term the update is homogeneous: normalizing rescales each state by
    a positive number, and the bias-free readout's argmax cannot change."""
    m = make(variant, **kw).double().eval()
    g = torch.Generator().manual_seed(3)
    tok = torch.randint(0, 5, (16, 40), generator=g)
    with torch.no_grad():
        a, b = m(tok, normalize=True), m(tok, normalize=False)
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    scale = b.norm(dim=-1) / a.norm(dim=-1)
    torch.testing.assert_close(a * scale.unsqueeze(-1), b, rtol=1e-9, atol=1e-12)


def test_normalize_default_follows_mode(tokens):
    m = make("full")
    m.train()
    assert not m.resolve_normalize(None)
    m.eval()
    assert m.resolve_normalize(None)
    assert not make("positive_diag").eval().resolve_normalize(None)
    assert not make("full", normalize=False).eval().resolve_normalize(None)


def test_h0_nonzero_and_frozen_transition():
    m = make("real_diag", freeze_transition=True)
    assert m.h0.norm() > 0.5
    assert not m.W_diag.requires_grad and m.W_U.requires_grad and m.h0.requires_grad
    mags = m.W_diag.abs()
    assert (mags >= 0.5).all() and (mags <= 1.5).all()
    assert (m.W_diag < 0).any() and (m.W_diag > 0).any()
    assert not make("full", freeze_transition=True).W.requires_grad


def test_init_near_identity():
    m = make("full", H=32)
    A = m.transition_matrices()
    dev = (A - torch.eye(32)).norm(dim=(1, 2)) / 32 ** 0.5
    assert (dev < 0.6).all() and (dev > 0.05).all()
    m = make("cp", H=8, rank=8)
    assert ((m.transition_matrices() - torch.eye(8)).abs().mean() < 0.3)


def test_parameter_names_follow_internals():
    names = lambda **kw: {n for n, _ in make(**kw).named_parameters()}
    assert names(variant="full") == {"W", "h0", "W_U"}
    assert names(variant="cp", rank=4) == {"W_out", "W_gate", "W_in", "h0", "W_U"}
    assert names(variant="block", block_size=4) == {"W_blocks", "h0", "W_U"}
    assert names(variant="rotation") == {"W_angle", "h0", "W_U"}
    assert names(variant="complex_diag") == {"W_re", "W_im", "h0", "W_U"}
    assert names(variant="real_diag", additive=True, d_embed=4) == {"W_diag", "W_B", "b_B", "h0", "W_U", "W_E"}
    m = make("full", d_embed=4)
    assert m.W.shape == (8, 8, 4) and m.W_E.shape == (5, 4) and m.W_U.shape == (8, 3)
    assert make("block", block_size=4).W_blocks.shape == (2, 4, 4, 5)
    assert {n for n, _ in make("positive_diag", n_layers=2).named_parameters()} >= {
        "blocks.1.W_diag", "blocks.1.b_diag", "blocks.1.W_B", "blocks.1.b_B", "blocks.0.h0"}


def test_methods_agree(tokens):
    m = make("full").double()
    outs = []
    for method in ("grouped", "alltokens", "auto"):
        m.recurrence_method = method
        outs.append(m(tokens))
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[2])
    m.recurrence_method = "bogus"
    with pytest.raises(ValueError, match="bogus"):
        m(tokens)
