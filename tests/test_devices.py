"""Device plumbing, checked on the CPU: specs, the CUDA-less error, CPU checkpoints, fingerprints."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.devices import check_device_spec, model_device, resolve_device
from workbench.tasks import make_task
from workbench.training import TrainConfig, evaluate, train

REPO = Path(__file__).resolve().parent.parent
NO_CUDA = not torch.cuda.is_available()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ), timeout=120)


def test_specs():
    for ok in ("auto", "cpu", "cuda", "cuda:1"):
        assert check_device_spec(ok) == ok
    for bad in ("gpu", "cuda:", "cuda:x", "", None, 0):
        with pytest.raises(ValueError, match="accepted: auto"):
            check_device_spec(bad)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if not NO_CUDA else "cpu")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        train(TrainConfig(task="parity", variant="full", d_hidden=4, steps=2, device="cuda"), None,
              progress=False)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("args", [
    ["train", "--task", "parity", "--steps", "2", "--device", "cuda"],
    ["eval", "parity_full_s0", "--device", "cuda"],
    ["analyze", "parity_full_s0", "--json", "--device", "cuda"],
    ["zoo", "build", "--only", "cyclic5_full_s0", "--device", "cuda:0"],
])
def test_cli_cuda_without_cuda_exits_2_with_one_line(args, tmp_path):
    out = _cli(*args, *(["--root", str(tmp_path)] if args[0] == "zoo" else []))
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.count("\n") == 1 and "CUDA is not available" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args,needle", [
    (["train", "--task", "parity", "--device", "gpu"], "device='gpu'"),
    (["zoo", "build", "--address", "127.0.0.1:6379", "--dry-run"], "needs --backend ray"),
    (["zoo", "build", "--backend", "slurm"], "invalid choice: 'slurm'"),
])
def test_cli_bad_device_or_backend(args, needle):
    out = _cli(*args)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and needle in out.stderr, out.stderr


def test_device_is_not_in_the_fingerprint_and_old_configs_read():
    cfg = TrainConfig(task="parity", d_hidden=4, steps=5)
    assert cfg.device == "auto"
    assert TrainConfig(task="parity", d_hidden=4, steps=5, device="cpu").fingerprint() == cfg.fingerprint()
    old = {k: v for k, v in cfg.to_dict().items() if k != "device"}   # written before the field
    assert TrainConfig.from_dict(old).fingerprint() == cfg.fingerprint()
    with pytest.raises(ValueError, match="device='tpu'"):
        TrainConfig(task="parity", device="tpu")


def test_cpu_run_checkpoint_and_evaluation_on_cpu(tmp_path):
    cfg = TrainConfig(task="parity", variant="full", d_hidden=4, steps=20, eval_every=10,
                      eval_lengths=(10,), eval_sequences=64, val_sequences=32,
                      long_val_length=20, long_val_sequences=32, device="cpu")
    res = train(cfg, tmp_path / "ck", progress=False)
    assert model_device(res.model).type == "cpu"
    conf = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert conf["training"]["device"] == "cpu"
    # the same weights as the default device on this machine (the fingerprint ignores it)
    again = train(dataclasses.replace(cfg, device="auto"), None, progress=False)
    if NO_CUDA:   # "auto" is the CPU here: bit-identical weights
        for a, b in zip(res.model.state_dict().values(), again.model.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert evaluate(res.model, make_task("parity"), [10], 64) == {10: res.accuracy[10]}


@pytest.mark.skipif(NO_CUDA, reason="needs CUDA (benchmarks/gpu_check.py covers a GPU session)")
def test_cuda_training_matches_cpu_in_float_tolerance():
    cfg = dict(task="parity", variant="full", d_hidden=8, steps=20, eval_every=10, eval_lengths=(10,),
               eval_sequences=64, val_sequences=32, long_val_length=20, long_val_sequences=32)
    a = train(TrainConfig(**cfg, device="cpu"), None, progress=False).model
    b = train(TrainConfig(**cfg, device="cuda"), None, progress=False).model
    assert model_device(b).type == "cpu"
    for (n, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-4, msg=n)
