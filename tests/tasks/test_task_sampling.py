"""Sampling: shapes, determinism, modarith lengths, chance levels, bad arguments."""
import numpy as np
import pytest
import torch

from workbench.tasks import Batch, make_task


@pytest.mark.parametrize("spec", ["parity", "group:S3", "modarith:5", "fsm:5", "even_pairs"])
def test_shapes_and_dtypes(spec):
    t = make_task(spec)
    b = t.sample(7, 11, torch.Generator().manual_seed(0))
    assert isinstance(b, Batch)
    for x in (b.tokens, b.labels, b.states):
        assert x.shape == (7, 11) and x.dtype == torch.int64
    assert b.final_labels.shape == (7,) and b.batch_size == 7 and b.length == 11
    assert int(b.tokens.min()) >= 0 and int(b.tokens.max()) < t.d_vocab
    assert int(b.labels.max()) < t.n_classes
    assert torch.equal(b.labels, torch.from_numpy(t.automaton.outputs[b.states.numpy()]))


def test_generator_reproducible_and_eval_set_deterministic():
    t = make_task("group:A4")
    a = t.sample(4, 9, torch.Generator().manual_seed(5))
    b = t.sample(4, 9, torch.Generator().manual_seed(5))
    assert torch.equal(a.tokens, b.tokens)
    e1, e2 = t.eval_set(50, n_sequences=32, seed=3), t.eval_set(50, n_sequences=32, seed=3)
    assert torch.equal(e1.tokens, e2.tokens) and torch.equal(e1.labels, e2.labels)
    assert not torch.equal(e1.tokens, t.eval_set(50, n_sequences=32, seed=4).tokens)
    assert not torch.equal(e1.tokens[:, :40], t.eval_set(40, n_sequences=32, seed=3).tokens)
    assert t.eval_set(10).tokens.shape == (512, 10)


def test_modarith_lengths():
    t = make_task("modarith:5")
    assert t.valid_length(10) == 11 and t.valid_length(11) == 11
    assert make_task("parity").valid_length(10) == 10
    b = t.sample(5, 10, torch.Generator().manual_seed(0))  # even: ends with an operator
    assert b.tokens.shape == (5, 10) and bool((b.tokens[:, -1] >= 5).all())
    assert torch.equal(b.labels[:, -1], b.labels[:, -2])  # trailing operator ignored
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        n = t.random_length(2, 10, g)
        assert n % 2 == 1 and 3 <= n <= 11
    with pytest.raises(ValueError):
        t.valid_length(0)


def test_chance_levels():
    assert make_task("group:S3").chance == pytest.approx(1 / 6)
    assert make_task("parity").chance == 0.5
    assert make_task("cycle_navigation").chance == pytest.approx(0.2)
    assert make_task("group:Z4/gens").chance == 1.0  # one generator: the label is fixed by the length
    fsm = make_task("fsm:5")
    dist = fsm.label_distribution(200)
    assert dist.sum() == pytest.approx(1.0) and fsm.chance == pytest.approx(fsm.label_distribution(500).max())
    # the exact distribution matches a large sample
    b = fsm.sample(20000, 30, torch.Generator().manual_seed(0))
    emp = np.bincount(b.final_labels.numpy(), minlength=5) / 20000
    assert np.abs(emp - fsm.label_distribution(30)).max() < 0.02


@pytest.mark.parametrize("args", [(0, 5), (3, 0), (-1, 5), (2.5, 5), (True, 5)])
def test_bad_sample_args(args):
    with pytest.raises(ValueError):
        make_task("parity").sample(*args)


def test_bad_eval_args():
    t = make_task("parity")
    with pytest.raises(ValueError):
        t.eval_set(5, seed=-1)
    with pytest.raises(ValueError):
        t.eval_set(0)
    with pytest.raises(ValueError):
        t.random_length(5, 2)


def test_scored_steps_skip_modarith_prefixes_that_end_in_an_operator():
    m = make_task("modarith:5")
    assert m.scored_steps(6).tolist() == [True, False, True, False, True, False]
    assert all(m.valid_length(t) == t for t in range(1, 40) if m.scored_steps(40)[t - 1])
    assert make_task("cyclic:5").scored_steps(4).tolist() == [True] * 4
    with pytest.raises(ValueError, match="length"):
        m.scored_steps(0)
