"""Time character tables and all irreps (explicit matrices) on one core.

Run: ``.venv/bin/python benchmarks/bench_groups.py``

Targets (issue 3): S5 <= 0.5 s, S6 (order 720) <= 5 s, groups up to order 2000 supported.
Reference: spgrep, the closest library, is quoted in the issue at about three minutes for S5; it
is not installed here, so that figure is printed as quoted, not measured.
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core, before numpy loads BLAS

import time  # noqa: E402

import numpy as np  # noqa: E402

from workbench.tasks.groups import Group, _named_generators, _product_generators  # noqa: E402

TARGETS = {"S5": 0.5, "S6": 5.0}


def fresh(name):
    """A new Group instance (bypasses the Group.named cache so nothing is precomputed)."""
    gens = _product_generators(name.split("x"))[0] if "x" in name else _named_generators(name)[0]
    return Group.from_permutations(gens, name=name)


def time_group(name, repeats=3):
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        G = fresh(name)
        t1 = time.perf_counter()
        X = G.character_table()
        t2 = time.perf_counter()
        R = G.irreps()
        t3 = time.perf_counter()
        row = (t1 - t0, t2 - t1, t3 - t2, t3 - t1)
        best = row if best is None or row[3] < best[3] else best
    orth = np.abs((X * G.class_sizes) @ X.conj().T / G.order - np.eye(len(X))).max()
    hom = max(G._cayley_error(r) for r in R)
    return G, best, orth, hom


def main():
    print(f"{'group':<14}{'order':>6}{'classes':>8}{'closure s':>11}{'chars s':>9}{'irreps s':>10}"
          f"{'chars+irreps s':>16}{'target s':>10}{'orth err':>10}{'hom err':>10}")
    for name in ["S4", "A5", "S5", "A6", "S6", "S3xA5", "A5xZ2xZ2xZ2xZ2", "S5xZ16", "D1000", "Z2000"]:
        G, (tc, tx, ti, tot), orth, hom = time_group(name, repeats=3 if name in ("S5", "S6", "A5") else 1)
        target = TARGETS.get(name)
        print(f"{name:<14}{G.order:>6}{len(G.class_sizes):>8}{tc:>11.3f}{tx:>9.3f}{ti:>10.3f}{tot:>16.3f}"
              f"{(f'{target:.1f}' if target else '-'):>10}{orth:>10.1e}{hom:>10.1e}")
    print("reference: spgrep, S5 character table + irreps: ~180 s (quoted in issue 3, not measured here)")


if __name__ == "__main__":
    main()
