"""Attribution patching: exact where the metric is linear, a directional derivative elsewhere,
and the ranking of activation patching on a zoo model."""
import json

import matplotlib
import numpy as np
import pytest
import torch

from analyses.attribution import AttributionResult, attribute_task, attribution_patching, spearman
from analyses.probing import make_patching_pairs, patching_sweep
from workbench import load_checkpoint

matplotlib.use("Agg")
STATE = "blocks.0.hook_state"
SITES = (STATE, "blocks.0.hook_out", "hook_embed")


@pytest.fixture(scope="module")
def s3():
    model, task = load_checkpoint("groupS3_full_s0")
    pairs = make_patching_pairs(task, n_pairs=12, length=20, position=8, seed=0)
    return model, task, pairs


def test_exact_where_linear_and_zero_where_nothing_differs(s3):
    model, _, (clean, corrupt, cl, co) = s3
    ref = patching_sweep(model, clean, corrupt, cl, co, sites=SITES, n_boot=10)
    res = attribution_patching(model, clean, corrupt, cl, co, sites=SITES, reference=ref)
    # logits_T = out_T @ W_U: patching hook_out (any step) or the last state is linear in it
    np.testing.assert_allclose(res.estimate[1], ref.recovery[1], atol=1e-5)
    np.testing.assert_allclose(res.estimate[0, -1], ref.recovery[0, -1], atol=1e-5)
    # the activations are identical before the changed token (position 8 -> step 9)
    assert np.all(res.estimate[0, :8] == 0) and np.all(res.estimate[2, :8] == 0)
    assert np.all(res.estimate[2, 9:] == 0)          # the embedding differs at one step only
    assert res.spearman >= 0.8, res.spearman
    assert set(res.spearman_by_site) == set(SITES)
    assert res.largest_floored < 1e-6                 # the floor removed round-off only


def test_state_estimate_is_the_directional_derivative(s3):
    """(LD(corrupt + a (clean - corrupt) at step t) - LD(corrupt)) / a -> the estimate, a -> 0."""
    model, _, (clean, corrupt, cl, co) = s3
    m = model
    res = attribution_patching(m, clean, corrupt, cl, co, sites=[STATE])
    clean_t, corrupt_t = torch.as_tensor(clean), torch.as_tensor(corrupt)
    with torch.no_grad():
        _, cc = m.run_with_cache(clean_t, names_filter=STATE)
        _, kc = m.run_with_cache(corrupt_t, names_filter=STATE)
    ar = np.arange(len(cl))

    def ld(logits):
        lg = logits[:, -1].double().numpy()
        return lg[ar, cl] - lg[ar, co]

    base = ld(m(corrupt_t).detach())
    a, t = 1e-2, 12
    delta = cc[STATE][:, t - 1] - kc[STATE][:, t - 1]
    hook = lambda h, hook: h + a * delta if hook.ctx["t"] == t else None
    with torch.no_grad():
        moved = ld(m.run_with_hooks(corrupt_t, fwd_hooks=[(STATE, hook)]))
    fd = (moved - base) / a
    np.testing.assert_allclose(res.estimate_ld[0, t - 1], fd, rtol=0.05, atol=0.05)
    assert np.abs(fd).max() > 0.1                       # a real effect was measured


def test_result_protocol_and_model_left_alone(s3):
    model, task, _ = s3
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    res = attribute_task(model, task, n_pairs=8, length=16, position=6, n_boot=10)
    assert all(torch.all(p.grad == 7.0) for p in model.parameters())   # user's grads kept
    model.zero_grad(set_to_none=True)
    assert not model.training and not any(hp.fwd_hooks or hp.bwd_hooks
                                          for hp in model.hook_dict.values())
    s = res.summary()
    json.dumps(s)
    assert s["spearman"] == res.spearman and s["n_pairs"] == 8 and s["n_steps"] == 16
    assert "Spearman" in res.sentence() and "logit difference" in res.sentence()
    assert len(repr(res)) < 500 and "spearman=" in repr(res)
    fig = res.plot()
    assert len(fig.axes[0].lines) >= 2 * len(SITES)
    assert res.top_cells(2)[0][2] >= res.top_cells(2)[1][2]


def test_bad_input(s3):
    model, _, (clean, corrupt, cl, co) = s3
    with pytest.raises(ValueError, match="unknown site 'hook_states'"):
        attribution_patching(model, clean, corrupt, cl, co, sites=["hook_states"])
    with pytest.raises(ValueError, match="model has no hook 'blocks.0.hook_diag'"):
        attribution_patching(model, clean, corrupt, cl, co, sites=["blocks.0.hook_diag"])
    with pytest.raises(ValueError, match="equal-shape"):
        attribution_patching(model, clean[:, :-1], corrupt, cl, co)
    with pytest.raises(ValueError, match=r"steps must be a non-empty list in 1..20"):
        attribution_patching(model, clean, corrupt, cl, co, steps=[0, 3])
    res = attribution_patching(model, clean, corrupt, cl, co, sites=[STATE])
    ref = patching_sweep(model, clean, corrupt, cl, co, sites=SITES, n_boot=10)
    from analyses.attribution import compare
    with pytest.raises(ValueError, match="same sites"):
        compare(res, ref)
    assert isinstance(res, AttributionResult) and res.spearman is None


def test_spearman_ties_and_constant():
    assert spearman([0, 0, 1, 2], [0, 0, 5, 9]) == pytest.approx(1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
