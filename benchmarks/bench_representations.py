"""Time the whole representation + comparison analysis of one model, A5 included (target ≤ 5 s).

Run: `.venv/bin/python benchmarks/bench_representations.py`

Each "learned" model is a hand construction disguised the way training disguises it: a random
non-orthogonal basis of a larger hidden space, per-token positive scales, junk on unreached
directions and 1e-6 noise (the trained zoo plugs in the same way). Timed per model: the
representation summary, and the comparison summary (recovers both models again, builds the
construction, intertwiner system, causal swap at length 500 on 64 sequences, and the "matched"
comparison). "cold" includes the first use of the group's irreps (computed once per process);
"warm" is a second run. The reference printed beside it, in the same process, is one forward pass
of the same model on the causal test's batch, so slow machines scale both.
"""

import os

# One thread for BLAS too (numpy's OpenBLAS otherwise spawns threads that fight on 2 cores:
# a 60×60 SVD took 15 ms instead of 1 ms under load). Must precede the numpy import.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyses.groups import comparison, representations  # noqa: E402
from workbench.constructions import construct, disguise  # noqa: E402
from workbench.tasks import make_task  # noqa: E402


def time_once(model, task):
    t0 = time.perf_counter()
    rep = representations.summarize(model, task)
    t1 = time.perf_counter()
    cmp = comparison.summarize(model, task)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, rep, cmp


def main():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    cases = [
        ("group:S3", ["2a", "trivial"], 16),
        ("cyclic:50", "rotation", 32),
        ("group:S4", ["3a", "2a"], 16),
        ("group:A5/gens", ["3a", "4a"], 32),
        ("group:A5", ["3a", "4a"], 32),
        ("group:A5", ["5a", "4a", "3a", "3b"], 64),
    ]
    print(f"{'task':16s} {'learned':22s} {'H':>3s} {'rep s':>7s} {'cmp s':>7s} {'total':>7s} "
          f"{'fwd ref':>8s}  hom.err  residual  causal")
    for spec, rep, hidden in cases:
        task = make_task(spec)
        learned = disguise(construct(task, "full", rep), task, hidden, rng, noise=1e-6)
        batch = task.eval_set(500, n_sequences=64)
        for label in ("cold", "warm"):
            tr, tc, r, c = time_once(learned, task)
            t0 = time.perf_counter()
            with torch.no_grad():
                learned(batch.tokens)
            ref = time.perf_counter() - t0
            print(f"{spec:16s} {r['decomposition'][:22]:22s} {hidden:3d} {tr:7.3f} {tc:7.3f} {tr + tc:7.3f} "
                  f"{ref:8.3f}  {r['homomorphism_error']:.1e}  {r['residual']:.1e}  {c['causal_accuracy']:.3f}"
                  f"  ({label})")


if __name__ == "__main__":
    main()
