"""Speed of the bilinear recurrences beside torch.nn.RNN(tanh), one thread, same process.

    .venv/bin/python benchmarks/bench_recurrence.py [--repeats 5] [--T 512] [--B 256] [--H 64] [--V 8]

Prints tokens/s of the whole model (embedding -> recurrence -> readout) forward (no grad) and
forward+backward (training mode, no normalization) for each variant, the ratio to nn.RNN
with the same sizes and a linear readout, the cost of run_with_cache of all states relative
to a plain forward (eval mode), and a V=120 run (A5 element tokens) of `full` showing which
dense method the cost model picks. Ratios are medians over --repeats of alternately timed pairs (reference, candidate), which
cancels most of the drift of a shared machine; tokens/s are medians of the candidate's times.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from workbench.cpu_memory import retain_freed_memory
from workbench.models import ModelConfig, build_model, choose_dense_method
from workbench.variants import BILINEAR_VARIANTS


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired_ratio(ref, fn, repeats):
    """Median of per-repeat time ratios ref/fn, timing the two alternately.

    On a shared, loaded machine the speed drifts between runs; alternating the reference and
    the candidate and taking the median ratio of neighbours cancels most of that drift.
    Returns (median fn time, median ratio).
    """
    ref(), fn()
    times, ratios = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref()
        t1 = time.perf_counter()
        fn()
        t2 = time.perf_counter()
        times.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(times), statistics.median(ratios)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--T", type=int, default=512)
    ap.add_argument("--B", type=int, default=256)
    ap.add_argument("--H", type=int, default=64)
    ap.add_argument("--V", type=int, default=8)
    ap.add_argument("--malloc", choices=("retain", "default"), default="retain",
                    help="retain: keep freed memory in the process as the CLI and training do "
                         "(workbench.cpu_memory); default: glibc's own thresholds")
    args = ap.parse_args(argv)
    if args.malloc == "retain":
        retain_freed_memory()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    B, T, H, V, C = args.B, args.T, args.H, args.V, args.V
    ntok = B * T
    tokens = torch.randint(0, V, (B, T))

    rnn = torch.nn.RNN(V, H, batch_first=True)
    readout = torch.nn.Linear(H, C, bias=False)
    x = torch.nn.functional.one_hot(tokens, V).float()

    def rnn_fwd():
        with torch.no_grad():
            readout(rnn(x)[0])

    def rnn_fb():
        readout(rnn(x)[0]).sum().backward()

    ref_f = median_time(rnn_fwd, args.repeats)
    ref_fb = median_time(rnn_fb, args.repeats)
    print(f"B={B} T={T} H={H} V={V}, 1 thread, torch {torch.__version__}, median of {args.repeats}, "
          f"malloc {args.malloc}")
    print(f"{'model':<16}{'fwd tok/s':>12}{'ratio':>8}{'fwd+bwd tok/s':>16}{'ratio':>8}")
    print(f"{'nn.RNN(tanh)':<16}{ntok / ref_f:>12,.0f}{1.0:>8.2f}{ntok / ref_fb:>16,.0f}{1.0:>8.2f}")
    options = {"cp": {"rank": H}, "block": {"block_size": 8}}
    for name in BILINEAR_VARIANTS:
        kw = options.get(name, {})
        m = build_model(ModelConfig(name, V, H, C, **kw)).train()

        def fwd(m=m):
            with torch.no_grad():
                m(tokens, normalize=False)

        def fb(m=m):
            m(tokens, normalize=False).sum().backward()

        tf, rf = paired_ratio(rnn_fwd, fwd, args.repeats)
        tfb, rfb = paired_ratio(rnn_fb, fb, args.repeats)
        label = name + (f" r={kw['rank']}" if "rank" in kw else f" b={kw['block_size']}" if "block_size" in kw else "")
        print(f"{label:<16}{ntok / tf:>12,.0f}{rf:>8.2f}{ntok / tfb:>16,.0f}{rfb:>8.2f}")

    print("\nrun_with_cache of every state (eval mode, normalized) vs plain forward:")
    for name, kw in (("full", {}), ("real_diag", {})):
        m = build_model(ModelConfig(name, V, H, C, **kw)).eval()

        def plain(m=m):
            with torch.no_grad():
                m(tokens)

        def cached(m=m):
            with torch.no_grad():
                m.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_state"))

        tc, r = paired_ratio(plain, cached, args.repeats)
        print(f"  {name:<12} run_with_cache(states) {tc * 1e3:7.1f} ms, "
              f"cost relative to a plain forward {1 / r:.2f}x")

    print("\nfull, V=120 (A5 element tokens): dense method choice, forward ms")
    V2 = 120
    tok2 = torch.randint(0, V2, (B, T))
    m = build_model(ModelConfig("full", V2, H, C)).train()
    print(f"  auto picks 'kernel' on CPU; without numba the cost model picks: "
          f"{choose_dense_method(V2, B, H)!r}")
    for method in ("kernel", "grouped", "alltokens"):
        m.recurrence_method = method

        def fwd2():
            with torch.no_grad():
                m(tok2, normalize=False)

        print(f"  {method:<10} {median_time(fwd2, max(1, args.repeats // 2)) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
