"""Sampling throughput (tokens + labels + states) on one core, beside a pure-Python reference.

Run: ``.venv/bin/python benchmarks/bench_sampling.py``

Target (issue 3): >= 1 M tokens/s. The reference labels a slice of the same batch with a Python
loop over the automaton table (what a naive data loader does), timed in the same process.
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import time  # noqa: E402

import torch  # noqa: E402

from workbench.tasks import make_task  # noqa: E402

TARGET = 1e6


def python_reference(task, tokens):
    tr, out = task.automaton.transitions.tolist(), task.automaton.outputs.tolist()
    labels = []
    for row in tokens.tolist():
        q, lab = task.automaton.start, []
        for v in row:
            q = tr[q][v]
            lab.append(out[q])
        labels.append(lab)
    return labels


def main():
    torch.set_num_threads(1)
    print(f"{'task':<16}{'B':>6}{'T':>6}{'Mtok/s':>9}{'python ref Mtok/s':>19}{'speed-up':>10}{'target':>8}")
    for spec, B, T in [("parity", 512, 500), ("cyclic:5", 512, 500), ("group:S5", 512, 500), ("group:A5/gens", 512, 500),
                       ("modarith:5", 512, 501), ("fsm:20:5", 512, 500), ("group:S3", 128, 40)]:
        task = make_task(spec)
        g = torch.Generator().manual_seed(0)
        task.sample(B, T, g)  # warm-up
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            task.sample(B, T, g)
            reps += 1
        rate = reps * B * T / (time.perf_counter() - t0)
        toks = task.sample_tokens(32, T, g)
        t1 = time.perf_counter()
        ref = python_reference(task, toks)
        ref_rate = 32 * T / (time.perf_counter() - t1)
        assert ref == task.label(toks).labels.tolist()
        print(f"{spec:<16}{B:>6}{T:>6}{rate / 1e6:>9.2f}{ref_rate / 1e6:>19.2f}{rate / ref_rate:>10.1f}"
              f"{'ok' if rate >= TARGET else 'MISS':>8}")


if __name__ == "__main__":
    main()
