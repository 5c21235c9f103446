"""Backward hooks on every hook point (fast path and hooked loop), incl_bwd caching, return_type."""
import pytest
import torch

from workbench.models import HookedBilinearRNN, StepCache

from .conftest import BASELINES, BILINEAR, make

STATE = "blocks.0.hook_state"
REL = 1e-5


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _labels(tokens, C=3):
    return (tokens.cumsum(1) % C).long()


def _force_loop(x, hook):
    return x   # an editing hook that edits nothing: forces the hooked loop


def _count_fire_step(monkeypatch, m):
    calls = []
    orig = m.fire_step
    monkeypatch.setattr(m, "fire_step", lambda *a: calls.append(a[2]) or orig(*a))
    return calls


@pytest.mark.parametrize("variant,kw", BILINEAR)
@pytest.mark.parametrize("path", ["fast", "loop"])
def test_state_backward_hook_fires_every_step(variant, kw, path, tokens, monkeypatch):
    """A plain run_with_hooks(bwd_hooks=...) then .backward(): T calls, ctx["t"] = T..1."""
    m = make(variant, **kw).eval()
    calls = _count_fire_step(monkeypatch, m)
    seen = []
    hook = lambda g, hook: seen.append((hook.ctx.get("t"), tuple(g.shape)))
    fwd = [(STATE, _force_loop)] if path == "loop" else []
    out = m.run_with_hooks(tokens, fwd_hooks=fwd, bwd_hooks=[(STATE, hook)])
    assert not m.hook_dict[STATE].ctx          # the step is set only while a hook runs
    out[:, -1].sum().backward()
    assert [t for t, _ in seen] == list(range(9, 0, -1))
    assert all(s == (3, 8) for _, s in seen)
    # the fast path never calls the hook point per step; the loop does
    assert (calls == []) if path == "fast" else (calls[:9] == list(range(1, 10)))
    assert not m.hook_dict[STATE].ctx


@pytest.mark.parametrize("variant,kw", BILINEAR + BASELINES)
@pytest.mark.parametrize("path", ["fast", "loop"])
def test_backward_hooks_fire_on_every_hook_point(variant, kw, path, tokens):
    m = make(variant, **kw).eval()
    seen = {}

    def hook(g, hook):
        seen.setdefault(hook.name, []).append(hook.ctx.get("t"))

    names = list(m.hook_dict)
    if variant == "transformer":
        # TL's bridge: the workbench vocabulary and the attention pattern (TL refuses hooks on
        # optional points such as hook_mlp_in unless switched on; hook_embed is its alias of
        # embed.hook_out)
        names = ["hook_embed", "hook_logits"] + [
            f"blocks.{l}.{s}" for l in range(2) for s in ("hook_state", "hook_out", "attn.hook_pattern")]
    states = [n for n in names if n.endswith("hook_state")]
    fwd = [(n, _force_loop) for n in states] if path == "loop" else []
    out = m.run_with_hooks(tokens, fwd_hooks=fwd, bwd_hooks=[(n, hook) for n in names])
    out.sum().backward()
    seen = {("hook_embed" if n == "embed.hook_out" else n): v for n, v in seen.items()}
    assert set(seen) == set(names)
    per_step = variant != "transformer"
    for n in states:
        assert sorted(seen[n]) == (list(range(1, 10)) if per_step else [None])
    for n in set(names) - set(states):
        assert seen[n] == [None], n


def _reference_grads(m, tokens, labels, names, normalize):
    """d loss / d activation by plain autograd: add a zero leaf at every site and take
    torch.autograd.grad with respect to it (no backward hooks anywhere)."""
    shapes = m.hook_shapes(*tokens.shape)
    deltas = {n: torch.zeros(shapes[n], dtype=torch.float64, requires_grad=True) for n in names}

    def add(x, hook):
        d = deltas[hook.name]
        t = hook.ctx.get("t")
        return x + (d[:, t - 1] if t is not None else d)

    loss = m.run_with_hooks(tokens, normalize=normalize, return_type="loss", labels=labels,
                            fwd_hooks=[(n, add) for n in names])
    grads = torch.autograd.grad(loss, list(deltas.values()))
    return dict(zip(names, grads, strict=True))


# (variant, kw, additive); positive_diag is always additive
CASES = [(v, kw, a) for v, kw in BILINEAR for a in (False, True) if not (v == "positive_diag" and a)]
CASES += [("full", {"d_embed": 4}, True), ("cp", {"rank": 6, "d_embed": 6}, False),
          ("real_diag", {"d_embed": 4}, False)]


@pytest.mark.parametrize("variant,kw,additive", CASES)
@pytest.mark.parametrize("normalize", [False, True])
def test_incl_bwd_gradients_equal_autograd(variant, kw, additive, normalize, tokens, monkeypatch):
    """cache[name + "_grad"] from the fast path and from the hooked loop equal plain autograd's
    gradients to 1e-5 relative, for every hook point (float64)."""
    m = make(variant, additive=additive, **kw).double().eval()
    labels = _labels(tokens)
    names = list(m.hook_dict)
    ref = _reference_grads(m, tokens, labels, names, normalize)
    assert ref[STATE].abs().max() > 0
    params = [p for p in m.parameters() if p.requires_grad]
    ref_params = torch.autograd.grad(m(tokens, normalize=normalize, return_type="loss",
                                       labels=labels), params)
    calls = _count_fire_step(monkeypatch, m)
    # 1. fast path: state, h0, out, logits and embedding gradients (no forward edit)
    downstream = [n for n in names if n.endswith(("hook_state", "hook_h0", "hook_out", "hook_logits"))]
    m.zero_grad()
    loss, cache = m.run_with_cache(tokens, names_filter=downstream + ["hook_embed"],
                                   incl_bwd=True, normalize=normalize, return_type="loss",
                                   labels=labels)
    assert calls == []                                   # it really was the fast path
    assert loss.ndim == 0
    for n in downstream + ["hook_embed"]:
        assert cache[n + "_grad"].shape == ref[n].shape, n
        assert _rel(cache[n + "_grad"], ref[n]) < REL, (n, _rel(cache[n + "_grad"], ref[n]))
    for p, g in zip(params, ref_params, strict=True):            # parameter gradients counted once
        assert _rel(p.grad, g) < REL, _rel(p.grad, g)
    # 2. every hook point (the loop runs for dense variants: hook_transition is in the graph)
    _, cache = m.run_with_cache(tokens, incl_bwd=True, normalize=normalize,
                                return_type="loss", labels=labels)
    for n in names:
        assert _rel(cache[n + "_grad"], ref[n]) < REL, (n, _rel(cache[n + "_grad"], ref[n]))
    # 3. the hooked loop forced by an editing hook on the state
    with m.hooks(fwd_hooks=[(STATE, _force_loop)]):
        _, looped = m.run_with_cache(tokens, names_filter=downstream, incl_bwd=True,
                                     normalize=normalize, return_type="loss", labels=labels)
    for n in downstream:
        assert _rel(looped[n + "_grad"], ref[n]) < REL, (n, _rel(looped[n + "_grad"], ref[n]))
    m.zero_grad()


def test_incl_bwd_steps_rule_and_parameter_grads(tokens):
    m = make("full").double().eval()
    labels = _labels(tokens)
    _, full = m.run_with_cache(tokens, incl_bwd=True, return_type="loss", labels=labels)
    g_full = m.W.grad.clone()
    m.zero_grad()
    _, part = m.run_with_cache(tokens, incl_bwd=True, steps=[2, -1], return_type="loss",
                               labels=labels)
    assert part.steps == [2, 9]
    for n in (STATE, "hook_embed", "blocks.0.hook_transition", "hook_logits"):
        torch.testing.assert_close(part[n + "_grad"], full[n + "_grad"][:, [1, 8]])
    assert part["blocks.0.hook_h0_grad"].shape == (3, 8)
    torch.testing.assert_close(m.W.grad, g_full)        # parameters get .grad, as in TL
    _, fast = m.run_with_cache(tokens, incl_bwd=True, steps=[2, -1], names_filter=STATE,
                               return_type="loss", labels=labels)     # fast path, same rule
    assert list(fast.keys()) == [STATE, STATE + "_grad"]
    torch.testing.assert_close(fast[STATE + "_grad"], full[STATE + "_grad"][:, [1, 8]])
    # the memory guard counts the gradients too
    with pytest.raises(ValueError, match="hook_transition_grad"):
        m.run_with_cache(tokens, incl_bwd=True, return_type="loss", labels=labels,
                         max_cache_bytes=20_000)


def test_incl_bwd_errors_name_the_fix(tokens):
    m = make("cp", rank=4).eval()
    with pytest.raises(ValueError, match=r"which is a tensor of shape \(3, 9, 3\).*"
                                         r"return_type='loss' with labels="):
        m.run_with_cache(tokens, incl_bwd=True)
    with torch.no_grad(), pytest.raises(ValueError, match="torch.no_grad"):
        m.run_with_cache(tokens, incl_bwd=True, return_type="loss", labels=_labels(tokens))
    assert not any(hp.fwd_hooks or hp.bwd_hooks for hp in m.hook_dict.values())


@pytest.mark.parametrize("variant,kw", [("full", {}), ("real_diag", {}), ("elman", {})])
def test_backward_hook_edit_propagates_to_earlier_steps(variant, kw, tokens):
    """Zeroing the gradient at step 5 cuts every earlier state (and h0) off the loss at the
    last step, on the fast path as in the loop (not the LSTM: its cell state carries gradient
    around the hooked h)."""
    for fwd in ([], [(STATE, _force_loop)]):
        m = make(variant, **kw).eval()
        cut = lambda g, hook: torch.zeros_like(g) if hook.ctx["t"] == 5 else None
        with m.hooks(fwd_hooks=fwd, bwd_hooks=[(STATE, cut)]):
            _, cache = m.run_with_cache(tokens, names_filter=[STATE, "blocks.0.hook_h0"],
                                        incl_bwd=True, return_type="loss",
                                        labels=torch.full_like(tokens, -100).index_fill_(1, torch.tensor([8]), 1))
        g = cache[STATE + "_grad"]
        assert g[:, 5:].abs().max() > 0             # steps 6..9 still see the loss
        assert g[:, :4].abs().max() == 0 and cache["blocks.0.hook_h0_grad"].abs().max() == 0


@pytest.mark.parametrize("path", ["fast", "loop"])
def test_add_caching_hooks_fills_per_step_sites(path, tokens):
    m = make("rotation").eval()
    _, ref = m.run_with_cache(tokens, names_filter=STATE)
    if path == "loop":
        m.add_hook(STATE, _force_loop)
    cache = m.add_caching_hooks(names_filter=[STATE, "hook_logits"], incl_bwd=True)
    out = m(tokens)
    assert cache[STATE].shape == (3, 9, 8)
    torch.testing.assert_close(cache[STATE], ref[STATE])
    out.sum().backward()
    assert cache[STATE + "_grad"].shape == (3, 9, 8)
    assert cache["hook_logits_grad"].shape == (3, 9, 3)
    m.reset_hooks()


def test_apply_slice_to_batch_dim_keeps_steps(tokens):
    m = make("full").eval()
    _, cache = m.run_with_cache(tokens, steps=[3, 7])
    sub = cache.apply_slice_to_batch_dim([0, 2])
    assert isinstance(sub, StepCache) and sub.steps == [3, 7]
    assert sub[STATE].shape == (2, 2, 8) and sub.step_index(7) == 1
    torch.testing.assert_close(sub[STATE], cache[STATE][[0, 2]])


@pytest.mark.parametrize("variant,kw", [("full", {}), ("positive_diag", {"n_layers": 2}),
                                        ("gru", {}), ("transformer", {})])
def test_return_type(variant, kw, tokens):
    m = make(variant, **kw).eval()
    labels = _labels(tokens)
    logits = m(tokens)
    torch.testing.assert_close(m(tokens, return_type="logits"), logits)
    assert m(tokens, return_type=None) is None
    loss = m(tokens, return_type="loss", labels=labels)
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), labels.reshape(-1))
    torch.testing.assert_close(loss, ce)
    lg, l2 = m(tokens, return_type="both", labels=labels)
    torch.testing.assert_close(lg, logits) and torch.testing.assert_close(l2, ce)
    per = m(tokens, return_type="loss", labels=labels, loss_per_token=True)
    assert per.shape == (3, 9)
    torch.testing.assert_close(per.mean(), ce)
    masked = labels.clone()
    masked[:, :-1] = -100          # score only the last step
    torch.testing.assert_close(m(tokens, return_type="loss", labels=masked),
                               torch.nn.functional.cross_entropy(logits[:, -1], labels[:, -1]))
    with pytest.raises(ValueError, match="return_type='logit'; accepted: 'logits', 'loss'"):
        m(tokens, return_type="logit")
    with pytest.raises(ValueError, match=r"needs labels= \(LongTensor \[3, 9\]"):
        m(tokens, return_type="loss")
    with pytest.raises(ValueError, match="label value 3 is out of range; accepted: 0..2"):
        m(tokens, return_type="loss", labels=torch.full_like(tokens, 3))
    with pytest.raises(ValueError, match=r"labels: got Tensor \(3,\)"):
        m(tokens, return_type="loss", labels=labels[:, 0])


def test_from_pretrained_is_load_checkpoint():
    from workbench import load_checkpoint

    m = HookedBilinearRNN.from_pretrained("cyclic5_full_s0")
    ref, _ = load_checkpoint("cyclic5_full_s0")
    assert isinstance(m, HookedBilinearRNN) and not m.training
    tok = torch.randint(0, 5, (2, 12))
    torch.testing.assert_close(m(tok), ref(tok))
    with pytest.raises(ValueError, match="is a HookedBaselineRNN"):
        HookedBilinearRNN.from_pretrained("cyclic5_lstm_s0")
    with pytest.raises(FileNotFoundError):
        HookedBilinearRNN.from_pretrained("no_such_model")
