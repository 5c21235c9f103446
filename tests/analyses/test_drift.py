"""State drift: exact constructions do not move; a planted per-step rotation error walks linearly
and is predicted to break where the geometry says."""
import math

import numpy as np
import pytest
import torch

from analyses.drift import checkpoint_steps, drift_from_matrices, state_drift
from workbench.constructions import construct
from workbench.tasks import make_task


def _sequences(task, n, length, seed=0):
    tokens = task.sample_tokens(n, length, torch.Generator().manual_seed(seed))
    return tokens.numpy(), task.automaton.run(tokens).numpy()


def test_exact_construction_does_not_drift():
    task = make_task("cyclic:5")
    res = state_drift(construct(task, "full"), task, max_length=800, n_sequences=16)
    assert res.p95_distance.max() < 1e-9
    assert not res.grows and math.isinf(res.predicted_break_length)
    assert res.n_reference_states == 5 and res.unreferenced_fraction == 0
    assert "no break predicted" in res.sentence()


@pytest.mark.parametrize("m,delta,length", [(5, 2e-3, 400), (7, 5e-4, 1600)])
def test_planted_rotation_error_walks_linearly_and_breaks_on_time(m, delta, length):
    # The rotation construction of cyclic:m (H = 2) with every token turned by an extra delta:
    # after t steps every state is off by the angle t*delta, distance 2 sin(t*delta/2), and the
    # margin (half the chord between neighbouring positions) is sin(pi/m). Lengths keep
    # t*delta below ~0.8 rad, where the chord is still close to linear in t.
    task = make_task(f"cyclic:{m}")
    model = construct(task, "rotation")
    from analyses._core import model_transitions

    A, h0 = model_transitions(model)
    assert A.shape[1] == 2
    c, s = math.cos(delta), math.sin(delta)
    A_bad = A @ np.array([[c, -s], [s, c]])
    tokens, states = _sequences(task, 8, length)
    res = drift_from_matrices(A_bad, h0, tokens, states, reference_steps=(1, 2), checkpoint_start=50)
    t = res.steps
    np.testing.assert_allclose(res.mean_distance, 2 * np.sin((t - 1) * delta / 2), rtol=0.05)
    assert res.exponent == pytest.approx(1.0, abs=0.05)
    expected = 2 * math.asin(math.sin(math.pi / m) / 2) / delta + 1
    assert res.margin == pytest.approx(math.sin(math.pi / m), rel=1e-6)
    assert res.predicted_break_length == pytest.approx(expected, rel=0.1)


def test_checkpoint_steps_double_and_end_at_the_length():
    assert checkpoint_steps(100, 1000).tolist() == [100, 200, 400, 800, 1000]
    assert checkpoint_steps(5, 5).tolist() == [5]
    with pytest.raises(ValueError, match="start"):
        checkpoint_steps(0, 10)


@pytest.mark.parametrize("kw,msg", [
    (dict(reference_steps=(50, 10)), "reference"),
    (dict(checkpoint_start=5000), "checkpoint_start"),
])
def test_bad_windows_are_refused(kw, msg):
    task = make_task("cyclic:3")
    tokens, states = _sequences(task, 2, 200)
    A = np.stack([np.eye(3)] * 3)
    with pytest.raises(ValueError, match=msg):
        drift_from_matrices(A, np.ones(3), tokens, states, **kw)


def test_additive_model_is_refused():
    from workbench.models import ModelConfig, build_model

    task = make_task("parity")
    model = build_model(ModelConfig(variant="full", d_vocab=2, d_hidden=4, n_classes=2, additive=True))
    with pytest.raises(ValueError, match="additive"):
        state_drift(model, task, max_length=200)


def test_plot_draws_the_fit_and_margin():
    import matplotlib

    matplotlib.use("Agg")
    from analyses.plot.drift import plot_drift

    task = make_task("cyclic:5")
    from analyses._core import model_transitions

    A, h0 = model_transitions(construct(task, "rotation"))
    c, s = math.cos(1e-3), math.sin(1e-3)
    tokens, states = _sequences(task, 4, 400)
    res = drift_from_matrices(A @ np.array([[c, -s], [s, c]]), h0, tokens, states)
    fig = plot_drift(res)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("predicted break" in x for x in labels) and any("margin" in x for x in labels)
