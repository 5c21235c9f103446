"""Attribution patching (one forward + one backward) beside the activation-patching sweep it
estimates, on shipped zoo models, one thread, same process.

    .venv/bin/python benchmarks/bench_attribution.py [--repeats 5] [--pairs 32] [--length 50]
        [--models groupS3_full_s0,modarith5_full_s0]

For each model: the same clean/corrupted pairs (``analyses.probing.make_patching_pairs``), the
sweep over (site x step) for the sites ``blocks.0.hook_state``, ``blocks.0.hook_out`` and
``hook_embed`` (``patching_sweep``, batched patched forwards; its default 1000-resample bootstrap
included, it is part of what a user runs) and ``attribution_patching`` of the same cells. Prints
the median time of each, the median of the per-repeat time ratios (the two timed alternately, so
the drift of a shared machine cancels), and the Spearman rank correlation of the two maps (with
and without the 1e-4 noise floor, see ``analyses.attribution.compare``).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def paired(ref, fn, repeats):
    """(median ref time, median fn time, median per-repeat ratio ref/fn), timed alternately."""
    ref(), fn()
    tr, tf, ratios = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref()
        t1 = time.perf_counter()
        fn()
        t2 = time.perf_counter()
        tr.append(t1 - t0)
        tf.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(tr), statistics.median(tf), statistics.median(ratios)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--length", type=int, default=50)
    ap.add_argument("--models", default="groupS3_full_s0,modarith5_full_s0")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from analyses.attribution import DEFAULT_SITES

    print(f"{args.pairs} pairs, length {args.length}, sites {', '.join(DEFAULT_SITES)}; "
          f"1 thread, torch {torch.__version__}, median of {args.repeats}")
    print(f"{'model':<20}{'H':>5}{'cells':>7}{'patching s':>12}{'attribution s':>15}"
          f"{'speed-up':>10}{'Spearman':>10}{'raw':>7}")
    for name in args.models.split(","):
        bench_model(name, args)


def bench_model(name, args):
    """One table row (and the per-site line) for zoo model ``name``."""
    from analyses.attribution import DEFAULT_SITES, attribution_patching
    from analyses.probing import make_patching_pairs, patching_sweep
    from workbench import load_checkpoint

    model, task = load_checkpoint(name)
    clean, corrupt, cl, co = make_patching_pairs(task, args.pairs, args.length, None, 0)
    out = {}

    def sweep():
        out["ref"] = patching_sweep(model, clean, corrupt, cl, co, sites=DEFAULT_SITES)

    def attribute():
        out["attr"] = attribution_patching(model, clean, corrupt, cl, co, sites=DEFAULT_SITES)

    t_ref, t_attr, ratio = paired(sweep, attribute, args.repeats)
    res = attribution_patching(model, clean, corrupt, cl, co, sites=DEFAULT_SITES,
                               reference=out["ref"])
    cells = res.estimate.size
    print(f"{name:<20}{model.cfg.d_hidden:>5}{cells:>7}{t_ref:>12.3f}{t_attr:>15.4f}"
          f"{ratio:>9.1f}x{res.spearman:>10.3f}{res.spearman_raw:>7.3f}")
    by_site = ", ".join(f"{s} {v:.3f}" for s, v in res.spearman_by_site.items())
    print(f"{'':<20}per site: {by_site}; largest |estimate - patched| "
          f"{res.max_abs_error:.2f}; largest value floored {res.largest_floored:.1e}")


if __name__ == "__main__":
    main()
