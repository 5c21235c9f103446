"""nnsight traces the models: every step of hook_state, one-step edits, the fast path outside."""
import nnsight
import pytest
import torch

from .conftest import make

STATE = "blocks.0.hook_state"


def _read_states(nm, tokens, T):
    with nm.trace(tokens) as tracer:
        states = nnsight.save([])
        for _ in tracer.iter[0:T]:          # hook_state fires T times: occurrence i = step i+1
            states.append(nm.blocks[0].hook_state.output.save())
        out = nm.blocks[0].hook_out.output.save()
    return torch.stack(list(states), 1), out


@pytest.mark.parametrize("variant,kw", [("full", {}), ("cp", {"rank": 6}), ("rotation", {}),
                                        ("positive_diag", {"n_layers": 2}), ("lstm", {})])
def test_trace_reads_every_step(variant, kw, tokens):
    m = make(variant, **kw).eval()
    _, cache = m.run_with_cache(tokens, names_filter=[STATE, "blocks.0.hook_out"])
    nm = nnsight.NNsight(m)
    states, out = _read_states(nm, tokens, tokens.shape[1])
    assert states.shape == (3, 9, 8)
    torch.testing.assert_close(states, cache[STATE], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out, cache["blocks.0.hook_out"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("variant,kw", [("full", {}), ("real_diag", {}), ("gru", {})])
def test_trace_edit_of_one_step_propagates_like_run_with_hooks(variant, kw, tokens):
    m = make(variant, **kw).eval()
    plain = m(tokens).detach()
    nm = nnsight.NNsight(m)
    with nm.trace(tokens) as tracer:
        for _ in tracer.iter[4]:            # occurrence 4 = step 5
            nm.blocks[0].hook_state.output = -nm.blocks[0].hook_state.output
        edited = nm.output.save()
    ref = m.run_with_hooks(tokens, fwd_hooks=[
        (STATE, lambda h, hook: -h if hook.ctx["t"] == 5 else None)])
    torch.testing.assert_close(edited, ref)
    torch.testing.assert_close(edited[:, :4], plain[:, :4])            # before the edit: same
    assert (edited[:, 4:] - plain[:, 4:]).abs().amax(dim=(0, 2)).min() > 1e-4   # after: changed


def test_wrapped_model_keeps_its_fast_path_outside_a_trace(tokens, monkeypatch):
    m = make("full").eval()
    ref = m(tokens).detach()
    nm = nnsight.NNsight(m)
    fired = []
    orig = m.fire_step
    monkeypatch.setattr(m, "fire_step", lambda *a: fired.append(a[2]) or orig(*a))
    torch.testing.assert_close(m(tokens), ref)
    assert fired == []                        # not traced: no per-step firing
    with nm.trace(tokens):
        nm.output.save()
    assert fired == list(range(1, 10))        # traced: the hooked loop shows every step
