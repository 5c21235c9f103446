"""Timings of the analyses on one core, each beside a reference run in the same process.

Targets (issue 6): extraction of a 25-state FSM model <= 10 s; a patching sweep over 500 steps
<= 30 s. Run: ``.venv/bin/python benchmarks/bench_analyses.py [--repeats N]``.
The models are exact constructions (``workbench.constructions.construct``), so the numbers do not
depend on the trained zoo; a trained model of the same size costs the same.
"""

from __future__ import annotations

import argparse
import os
import time

# one BLAS thread before numpy loads: on the shared 2-core machine a multi-threaded OpenBLAS under
# contention made the spectra of an H = 256 model 12x slower
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _best(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from analyses.automata_extraction import extract_automaton, sample_tokens
    from analyses.probing import make_patching_pairs, patching_sweep
    from analyses.spectral import spectra
    from analyses.tensor_decomposition import decompose_model
    from workbench.constructions import construct
    from workbench.tasks import make_task

    task = make_task("fsm:25")
    model = construct(task, "full")
    print(f"model: {task.spec} full construction, H={model.cfg.d_hidden}, V={task.d_vocab}; "
          f"torch threads={torch.get_num_threads()}")

    # reference: plain forward of the same sequences the extraction samples
    toks = [torch.as_tensor(t) for t in sample_tokens(task)]
    with torch.no_grad():
        ref, _ = _best(lambda: [model(t) for t in toks], args.repeats)
    t_ext, res = _best(lambda: extract_automaton(model, task), args.repeats)
    print(f"automaton extraction (256 x 50 + 16 x 500 steps): {t_ext:.2f} s "
          f"[target <= 10 s]; reference forward of the same tokens: {ref:.3f} s; "
          f"result: {res.n_clusters} clusters, isomorphic={res.isomorphic}, stable={res.stable}")

    # a trained zoo model, when the zoo is built: A5 (60 states, H = 64), whose wobbling states made
    # the purely geometric clustering slow (1000 micro-clusters) and unstable
    try:
        from workbench.checkpoints import load_checkpoint

        a5, a5_task = load_checkpoint("groupA5_full_s0")
    except Exception as exc:  # the zoo may not be built yet
        print(f"trained groupA5_full_s0 not available ({type(exc).__name__}); skipped")
    else:
        t_a5, r5 = _best(lambda: extract_automaton(a5, a5_task), args.repeats)
        t_a5_old, r5o = _best(lambda: extract_automaton(a5, a5_task, method="linkage"), 1)
        print(f"trained groupA5_full_s0 extraction: {t_a5:.2f} s [target <= 5 s], {r5.n_clusters} "
              f"clusters, isomorphic={r5.isomorphic}, stable={r5.stable}; reference (geometric "
              f"linkage, method='linkage'): {t_a5_old:.2f} s, isomorphic={r5o.isomorphic}, "
              f"stable={r5o.stable}")
        from analyses.drift import state_drift
        from analyses.groups.snapping import snap_transitions
        from workbench.training import evaluate

        t_dr, dr = _best(lambda: state_drift(a5, a5_task), args.repeats)
        t_ev, _ = _best(lambda: evaluate(a5, a5_task, [2000], n_sequences=64), 1)
        print(f"trained groupA5_full_s0 state drift (64 sequences x 2000 steps, numpy): {t_dr:.2f} s; "
              f"reference: the model's own evaluation at length 2000 on 64 sequences {t_ev:.2f} s; "
              f"predicted break {dr.predicted_break_length:,.0f}")
        t_id, idl = _best(lambda: snap_transitions(a5, a5_task, lengths=(500, 5000)), 1)
        print(f"trained groupA5_full_s0 snap to exact + accuracy at 500 and 5000, learned and snapped "
              f"(128 sequences each): {t_id:.2f} s; {idl.sentence()}")

    clean, corrupt, cl, co = make_patching_pairs(task, n_pairs=16, length=500, position=490)
    cl_t = torch.as_tensor(corrupt)
    with torch.no_grad():
        fast, _ = _best(lambda: model(cl_t), args.repeats)
        hooked, _ = _best(lambda: model.run_with_hooks(
            cl_t, fwd_hooks=[("blocks.0.hook_state", lambda a, hook: a)]), args.repeats)
    sites = ("blocks.0.hook_state", "blocks.0.hook_out", "hook_embed")
    t_sw, sw = _best(lambda: patching_sweep(model, clean, corrupt, cl, co, sites=sites), args.repeats)
    print(f"patching sweep, 3 sites x 500 steps x 16 pairs (24,000 patched runs) + 1000 bootstrap "
          f"resamples: {t_sw:.2f} s [target <= 30 s]; reference: one forward [16, 500] fast path "
          f"{fast:.3f} s, hooked loop {hooked:.3f} s (a naive sweep = 1500 hooked forwards = "
          f"{1500 * hooked:.0f} s)")
    print(f"  state-site recovery at steps 490 / 491 / 500: {sw.recovery[0, 489]:.2f} / "
          f"{sw.recovery[0, 490]:.2f} / {sw.recovery[0, 499]:.2f}")

    t_sp, sp = _best(lambda: spectra(model, task), args.repeats)
    t_dec, _ = _best(lambda: decompose_model(model, max_rank=4), 1)
    print(f"spectra: {t_sp:.2f} s (max phase error {sp.max_phase_error:.1e}, max commutator "
          f"{sp.max_commutator:.2f}); tensor decomposition, ranks 1..4: {t_dec:.2f} s")

    # a zoo-sized model (H = 256, untrained weights: the cost does not depend on them)
    from workbench.models import ModelConfig, build_model

    big = build_model(ModelConfig(variant="full", d_vocab=25, d_hidden=256, n_classes=25)).eval()
    t_big, _ = _best(lambda: spectra(big, task), 1)
    t_bext, _ = _best(lambda: extract_automaton(big, task), 1)
    print(f"H=256 full model: spectra {t_big:.2f} s; extraction of its (unsettled, 1000 "
          f"micro-cluster) states {t_bext:.2f} s")


if __name__ == "__main__":
    main()
