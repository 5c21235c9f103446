"""Checks and timings that need a CUDA GPU; prints every number it measures.

    python benchmarks/gpu_check.py [--train-steps 20000] [--repeats 20] [--skip-train]

Sections (each reports its own failure and the script goes on):

1. parity: forward logits and every parameter gradient of ``full``, ``cp``, ``rotation`` and
   ``real_diag`` on the CPU vs the GPU (float64, max relative difference; float32 as well);
   the method choice on CUDA (``alltokens``) against ``grouped``.
2. speed: fwd+bwd tokens/s of ``full`` beside ``torch.nn.RNN(tanh)`` (cuDNN) on the same GPU,
   at the bench_recurrence shape (B=256, T=512, H=64, V=8) and the training shape (B=64,
   T=10, H=256, V=25); ``full`` eager and with the fwd+bwd captured in a CUDA graph (replayed
   on static inputs: what graphs buy against the launch-bound eager loop).
3. training: one ``fsm:25`` run (``--train-steps``, no early stop) with ``device="cuda"``:
   wall time, steps/s, accuracy at 10/50/500, beside the same number of steps on the CPU
   extrapolated from 200 timed steps.
4. analyze: ``analyze_checkpoint(..., device="cuda")`` on a shipped zoo model, equal to the CPU
   result.

Not run on a GPU yet when this file was written (the machine it was written on has none).
"""
from __future__ import annotations

import argparse
import json
import time
import traceback

import torch
import torch.nn.functional as F


def section(name):
    def wrap(fn):
        def run(*a, **k):
            print(f"\n== {name}", flush=True)
            t0 = time.perf_counter()
            try:
                fn(*a, **k)
            except Exception as e:   # report and go on: one broken section must not hide the rest
                print(f"FAILED {type(e).__name__}: {e}")
                traceback.print_exc(limit=4)
            print(f"   ({time.perf_counter() - t0:.1f}s)", flush=True)
        return run
    return wrap


def cuda_time(fn, repeats):
    """Median seconds of ``fn`` measured with CUDA events (after two warm-up calls)."""
    fn()
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    times.sort()
    return times[len(times) // 2]


@section("1. parity CPU vs CUDA (fast path, forward and gradients)")
def parity():
    from workbench.models import ModelConfig, build_model

    torch.manual_seed(0)
    tokens = torch.randint(0, 5, (6, 12))
    for dtype in (torch.float64, torch.float32):
        for variant, kw in (("full", {}), ("cp", {"rank": 8}), ("rotation", {}), ("real_diag", {})):
            m = build_model(ModelConfig(variant, 5, 8, 5, normalize=True, **kw)).to(dtype).train()
            results = {}
            for dev in ("cpu", "cuda"):
                md = m.to(dev)
                out = md(tokens.to(dev))
                loss = (out * torch.linspace(-1, 1, out.numel(), device=dev, dtype=dtype).view_as(out)).sum()
                grads = torch.autograd.grad(loss, [p for p in md.parameters() if p.requires_grad])
                results[dev] = (out.detach().cpu(), [g.cpu() for g in grads])
            rel = lambda a, b: float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
            f = rel(results["cuda"][0], results["cpu"][0])
            g = max(rel(a, b) for a, b in zip(results["cuda"][1], results["cpu"][1], strict=True))
            print(f"   {str(dtype):<14} {variant:<10} max rel diff: forward {f:.2e}  gradients {g:.2e}")
    from workbench.models import choose_dense_method

    print(f"   method chosen on CUDA for V=25 B=64 H=256: {choose_dense_method(25, 64, 256, 'cuda')!r}")


def _full_fast_step(model, tokens, labels, method):
    """The ``full`` one-hot fast path written without the model's token check (``tokens.max()``
    syncs the host, which CUDA-graph capture forbids): the same arithmetic as ``model(tokens)``."""
    from workbench.models.recurrence import dense_token_recurrence

    B = tokens.shape[0]
    vocab = torch.arange(model.cfg.d_vocab, device=tokens.device)[None]
    AT = model._token_transitions_T(vocab)
    states = dense_token_recurrence(AT, tokens.T.contiguous(), model.h0.unsqueeze(0).expand(B, -1),
                                    None, True, method)
    loss = F.cross_entropy(states[-1] @ model.W_U, labels)
    loss.backward()
    return loss


@section("2. speed on the GPU: full vs nn.RNN (fwd+bwd tokens/s), eager and CUDA graph")
def speed(repeats):
    for B, T, H, V in ((256, 512, 64, 8), (64, 10, 256, 25), (1024, 10, 256, 25)):
        speed_at(B, T, H, V, repeats)


def speed_at(B, T, H, V, repeats):
    from workbench.models import ModelConfig, build_model

    dev = torch.device("cuda")
    torch.manual_seed(0)
    tokens = torch.randint(0, V, (B, T), device=dev)
    labels = torch.randint(0, V, (B,), device=dev)
    rnn = torch.nn.RNN(V, H, batch_first=True).to(dev)
    readout = torch.nn.Linear(H, V, bias=False).to(dev)
    x = F.one_hot(tokens, V).float()

    def rnn_fb():
        F.cross_entropy(readout(rnn(x)[0][:, -1]), labels).backward()

    t_rnn = cuda_time(rnn_fb, repeats)
    print(f"   B={B} T={T} H={H} V={V}: nn.RNN fwd+bwd {t_rnn * 1e3:8.2f} ms  "
          f"{B * T / t_rnn:>12,.0f} tok/s")
    m = build_model(ModelConfig("full", V, H, V, normalize=True)).to(dev).train()
    for method in ("alltokens", "grouped"):
        m.recurrence_method = method

        def fb():
            F.cross_entropy(m(tokens)[:, -1], labels).backward()

        t = cuda_time(fb, repeats)
        print(f"   full {method:<10} eager   {t * 1e3:8.2f} ms  {B * T / t:>12,.0f} tok/s  "
              f"{t_rnn / t:5.2f}x nn.RNN")
    # CUDA graph of fwd+bwd (static tokens/labels; grads accumulate into static .grad).
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            _full_fast_step(m, tokens, labels, "alltokens")
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        _full_fast_step(m, tokens, labels, "alltokens")
    t_eager = cuda_time(lambda: _full_fast_step(m, tokens, labels, "alltokens"), repeats)
    t_graph = cuda_time(g.replay, repeats)
    print(f"   full alltokens no-check eager {t_eager * 1e3:8.2f} ms; CUDA graph {t_graph * 1e3:8.2f} ms "
          f"({B * T / t_graph:,.0f} tok/s, {t_rnn / t_graph:.2f}x nn.RNN, {t_eager / t_graph:.1f}x eager)")


@section("3. training fsm:25 on CUDA")
def training(steps):
    from workbench.training import TrainConfig, train

    base = dict(task="fsm:25", variant="full", steps=steps, early_stop=False, seed=0)
    t0 = time.perf_counter()
    res = train(TrainConfig(**base, device="cuda"), None, progress=False)
    wall = time.perf_counter() - t0
    print(f"   cuda: {res.steps} steps, train {res.train_time_s:.1f}s ({res.steps / res.train_time_s:.0f} "
          f"steps/s), wall {wall:.1f}s; accuracy {json.dumps(res.accuracy)}; "
          f"normalized {json.dumps({k: round(v, 4) for k, v in res.normalized_accuracy.items()})}")
    cpu = train(TrainConfig(**{**base, "steps": 200, "eval_every": 10**6}, device="cpu"), None, progress=False)
    per = cpu.train_time_s / cpu.steps
    print(f"   cpu: {per * 1e3:.2f} ms/step over 200 steps (validation included) -> "
          f"~{per * steps:.0f}s for {steps} steps")


@section("4. analyze on CUDA equals CPU")
def analyze():
    from analyses.reporting.summary import analyze_checkpoint

    name = "groupS3_full_s0"
    a = analyze_checkpoint(name)
    b = analyze_checkpoint(name, device=torch.device("cuda"))
    print(f"   {name}: CPU and CUDA summaries {'equal' if a == b else 'DIFFER'}")
    if a != b:
        print("   cpu ", json.dumps(a, default=str)[:600])
        print("   cuda", json.dumps(b, default=str)[:600])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-steps", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check.py needs CUDA; this machine has none")
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
    parity()
    speed(args.repeats)
    if not args.skip_train:
        training(args.train_steps)
    analyze()


if __name__ == "__main__":
    main()
