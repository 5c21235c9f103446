"""kill -9 at random points of a training run (writes included), then the same call again:
it resumes from the last complete training state and finishes with the same valid checkpoint
as an uninterrupted run.

The child is a forked copy of this process (torch already imported, so each start costs
milliseconds), killed with SIGKILL; ``os.fsync`` is slowed in the child so that a good share of
the kills land inside a write (between writing a temporary file and renaming it)."""
import multiprocessing
import os
import random
import signal
import time

import pytest
import torch

from workbench.checkpoints import load_checkpoint
from workbench.training import TRAIN_STATE_DIR, TrainConfig, train

CFG = dict(task="parity", d_hidden=4, steps=400, eval_every=10, checkpoint_every=10, early_stop=False,
           eval_lengths=(10,), val_sequences=16, long_val_sequences=16, long_val_length=40,
           eval_sequences=32)


def _child(out):
    import workbench.checkpoints as ck

    real_fsync = os.fsync

    def slow_fsync(fd):
        time.sleep(0.01)
        real_fsync(fd)
    ck.os.fsync = slow_fsync
    torch.set_num_threads(1)
    train(TrainConfig(**CFG), out, progress=False)
    os._exit(0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_9_anywhere_then_rerun_finishes_the_same_checkpoint(tmp_path):
    ref = train(TrainConfig(**CFG), tmp_path / "ref", progress=False)
    out = tmp_path / "killed"
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(15)
    kills = 0
    for _ in range(12):
        p = ctx.Process(target=_child, args=(out,))
        p.start()
        time.sleep(rng.uniform(0.05, 0.6))
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.join()
        if p.exitcode == 0:
            break
    # 400 steps: long enough that a few kills land before the run can finish (a step of this tiny
    # model takes well under a millisecond, so at 120 steps a lucky child finished in one go).
    assert kills >= 3, "the run finished before it could be killed a few times"
    res = train(TrainConfig(**CFG), out, progress=False)
    model, task = load_checkpoint(out)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert res.accuracy == ref.accuracy
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers and not (out / TRAIN_STATE_DIR).exists(), leftovers
