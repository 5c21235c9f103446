"""Training-step speed of `full` beside a plain PyTorch loop and torch.nn.RNN, one thread, one process.

    .venv/bin/python benchmarks/bench_training.py [--H 32,64,128,256] [--V 25] [--B 64] [--T 10]
                                                  [--repeats 30] [--method auto]

For each hidden size H it prints, in milliseconds (medians of --repeats, timed alternately so
that drift on a shared machine hits every column alike):

* ``fwd`` / ``bwd`` / ``fwd+bwd``: the workbench model ``full`` (one-hot input, V tokens,
  per-step L2 normalization on, as the training recipe runs it) with the final-step
  cross-entropy loss;
* ``step``: the whole training step as :mod:`workbench.training` runs it (zero_grad, forward,
  loss, backward, gradient clipping, AdamW as ``workbench.training.make_adamw``); ``step0``: the same with PyTorch's default
  (per-tensor) AdamW;
* ``GFLOP/s`` / ``floor``: this core's GEMM rate (a 512x4096x512 ``torch.mm`` timed in the same
  alternating rounds, so it sees the same load) and the FLOP floor of forward+backward,
  ``6*B*T*H^2`` FLOPs (one GEMM forward, two backward) at that rate;
* ``x floor``: fwd+bwd / floor (the acceptance criterion is <= 4 at H=256);
* ``loop f+b``: a plain PyTorch reference (per-token matrices gathered by ``index_select``,
  ``bmm`` with the state as a row vector, autograd through the Python loop);
* ``RNN f+b`` / ``RNN step``: ``torch.nn.RNN(tanh)`` with the same H, one-hot input and a linear
  readout, forward+backward and the whole step with the same AdamW.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from workbench.cpu_memory import retain_freed_memory
from workbench.models import ModelConfig, build_model
from workbench.training import make_adamw


GEMM_SHAPE = (512, 4096, 512)


def make_gemm():
    """A callable doing one 512x4096 @ 4096x512 torch.mm, and its FLOP count."""
    m, k, n = GEMM_SHAPE
    a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    return (lambda: torch.mm(a, b, out=out)), 2 * m * k * n


def alloc_touch_ms(n: int, repeats: int = 30) -> float:
    """Median ms to allocate three fresh float tensors of n elements (a step's gradient and two
    optimiser temporaries live at once), write each once and free them."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a, b, c = torch.empty(n).fill_(1.0), torch.empty(n).fill_(2.0), torch.empty(n).fill_(3.0)
        del a, b, c
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def time_alternating(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable, calling them in turn ``repeats`` times after a warm-up."""
    for fn in fns.values():
        fn()
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


class LoopReference(torch.nn.Module):
    """Plain autograd bilinear RNN: gather each step's per-token matrices, ``bmm``, normalize."""

    def __init__(self, V: int, H: int, C: int):
        super().__init__()
        self.AT = torch.nn.Parameter(torch.eye(H).expand(V, H, H) + 0.3 / H ** 0.5 * torch.randn(V, H, H))
        self.h0 = torch.nn.Parameter(F.normalize(torch.randn(H), dim=0))
        self.W_U = torch.nn.Parameter(torch.randn(H, C) / H ** 0.5)

    def forward(self, tokens):
        B, T = tokens.shape
        h = self.h0.expand(B, 1, -1)
        for t in range(T):
            h = torch.bmm(h, self.AT.index_select(0, tokens[:, t]))
            h = h / torch.linalg.vector_norm(h, dim=2, keepdim=True)
        return h[:, 0] @ self.W_U


class RNNReference(torch.nn.Module):
    def __init__(self, V: int, H: int, C: int):
        super().__init__()
        self.V = V
        self.rnn = torch.nn.RNN(V, H, batch_first=True)
        self.readout = torch.nn.Linear(H, C, bias=False)

    def forward(self, tokens):
        return self.readout(self.rnn(F.one_hot(tokens, self.V).float())[0][:, -1])


def measure(H: int, V: int, B: int, T: int, tokens, labels, gemm, gemm_flops, args) -> None:
    """Time every column for one hidden size and print its row."""
    C = V
    model = build_model(ModelConfig("full", V, H, C, normalize=True)).train()
    model.recurrence_method = args.method
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_adamw(params, lr=1e-3, weight_decay=0.0)
    loop = LoopReference(V, H, C)
    rnn = RNNReference(V, H, C)
    rnn_opt = make_adamw(list(rnn.parameters()), lr=1e-3, weight_decay=0.0)
    plain_opt = torch.optim.AdamW(params, lr=1e-3)   # the per-tensor default, for comparison
    held = {}

    def fwd():
        with torch.no_grad():
            model(tokens)

    def fwd_only():
        held["loss"] = F.cross_entropy(model(tokens)[:, -1], labels)

    def bwd_only():
        held["loss"].backward()

    def fwd_bwd():
        F.cross_entropy(model(tokens)[:, -1], labels).backward()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(tokens)[:, -1], labels).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    def step_plain_adam():
        plain_opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(tokens)[:, -1], labels).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        plain_opt.step()

    def loop_fb():
        F.cross_entropy(loop(tokens), labels).backward()

    def rnn_fb():
        F.cross_entropy(rnn(tokens), labels).backward()

    def rnn_step():
        rnn_opt.zero_grad(set_to_none=True)
        F.cross_entropy(rnn(tokens), labels).backward()
        torch.nn.utils.clip_grad_norm_(list(rnn.parameters()), 1.0)
        rnn_opt.step()

    t = time_alternating({"gemm": gemm, "fwd": fwd, "fb": fwd_bwd, "step": step, "step0": step_plain_adam, "loop": loop_fb,
                          "rnn": rnn_fb, "rnn_step": rnn_step}, args.repeats)
    rate = gemm_flops / t["gemm"]
    # backward alone: forward outside the timer, then time the backward call.
    bt = []
    for _ in range(args.repeats):
        fwd_only()
        t0 = time.perf_counter()
        bwd_only()
        bt.append(time.perf_counter() - t0)
    floor = 6 * B * T * H * H / rate
    row = [t["fwd"], statistics.median(bt), t["fb"], t["step"], t["step0"]]
    tail = [t["loop"], t["rnn"], t["rnn_step"]]
    print(f"{H:>5}" + "".join(f"{x * 1e3:>10.2f}" for x in row) + f"{rate / 1e9:>10.0f}"
          + f"{floor * 1e3:>10.2f}" + f"{t['fb'] / floor:>10.1f}"
          + "".join(f"{x * 1e3:>10.2f}" for x in tail), flush=True)



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--H", default="32,64,128,256")
    ap.add_argument("--V", type=int, default=25)
    ap.add_argument("--B", type=int, default=64)
    ap.add_argument("--T", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--method", default="auto", help="recurrence_method of the workbench model")
    ap.add_argument("--malloc", choices=("retain", "default"), default="retain",
                    help="retain: keep freed memory in the process as training does "
                         "(workbench.cpu_memory); default: glibc's own thresholds")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    n = args.V * max(int(h) for h in args.H.split(",")) ** 2
    before = alloc_touch_ms(n)
    if args.malloc == "retain":
        retain_freed_memory()
        print(f"allocate + fill 3 fresh [{n:,}] float tensors (V*H^2 each) and free them: "
              f"{before:.2f} ms with glibc's default thresholds, {alloc_touch_ms(n):.2f} ms retained")
    torch.manual_seed(0)
    V, B, T, C = args.V, args.B, args.T, args.V
    tokens = torch.randint(0, V, (B, T))
    labels = torch.randint(0, C, (B,))
    gemm, gemm_flops = make_gemm()
    print(f"full, V={V} B={B} T={T}, 1 thread, torch {torch.__version__}, median of {args.repeats}; "
          f"floor = 6*B*T*H^2 FLOPs at the GEMM rate of a 512x4096x512 mm timed in the same rounds; "
          f"malloc {args.malloc}")
    cols = ["fwd", "bwd", "fwd+bwd", "step", "step0", "GFLOP/s", "floor", "x floor", "loop f+b", "RNN f+b",
            "RNN step"]
    print(f"{'H':>5}" + "".join(f"{c:>10}" for c in cols) + "   (ms)")
    for H in (int(h) for h in args.H.split(",")):
        measure(H, V, B, T, tokens, labels, gemm, gemm_flops, args)

if __name__ == "__main__":
    main()
