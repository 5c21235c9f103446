"""A tiny zoo of hand-built models, written with the real checkpoint and zoo-table code.

Used by the figure, report and notebook tests so that they run in seconds without the trained
zoo: every model is an exact construction (``workbench.constructions.construct``), saved with
``workbench.checkpoints.save_checkpoint`` under a run name of the real plan, and
``workbench.zoo.write_tables`` writes ``index.json`` / ``results.csv`` exactly as ``zoo build``
does. The S3 model is built through ``2a ⊕ trivial`` (not the FSM tensor) so that learned and
constructed differ by more than a change of basis.
"""
from __future__ import annotations

from pathlib import Path

#: (run name, task, variant key, construct variant, representation)
SMALL = [
    ("cyclic5_full_s0", "cyclic:5", "full", "full", None),
    ("cyclic5_rotation_s0", "cyclic:5", "rotation", "rotation", None),
    ("groupS3_full_s0", "group:S3", "full", "full", ["2a", "trivial"]),
    ("fsm5_full_s0", "fsm:5", "full", "full", None),
]
LARGER = SMALL + [
    ("cyclic5_block2_s0", "cyclic:5", "block2", "block", None),
    ("cyclic2_block1_s0", "cyclic:2", "block1", "real_diag", None),
    ("modarith5_full_s0", "modarith:5", "full", "full", None),
    ("groupA5_full_s0", "group:A5", "full", "full", "permutation"),
    ("groupS3_cp_s0", "group:S3", "cp", "cp", None),
]


def build_fake_zoo(root, runs=SMALL, echo: bool = True, n_sequences: int = 64) -> Path:
    """Write a zoo of constructed models into ``root``; returns ``root``."""
    import torch

    from workbench.checkpoints import atomic_write_json, save_checkpoint
    from workbench.constructions import construct
    from workbench.tasks import make_task
    from workbench.training import evaluate, normalized_accuracy
    from workbench.zoo import Run, echo_state_parity, step_accuracy, write_tables

    torch.set_num_threads(1)
    root = Path(root)
    plan = []
    for name, spec, vkey, variant, rep in runs:
        task = make_task(spec)
        model = construct(task, variant, representation=rep)
        acc = evaluate(model, task, [10, 50, 500], n_sequences=n_sequences)
        metrics = {"accuracy": {str(k): v for k, v in acc.items()},
                   "normalized_accuracy": {str(k): normalized_accuracy(v, task.chance) for k, v in acc.items()},
                   "chance": task.chance, "steps": 0, "lr": None, "train_time_s": 0.0,
                   "solved_validation": True,
                   "step_accuracy": {"length": 500, "accuracy": (sa := step_accuracy(model, task, n_sequences=n_sequences)),
                                     "normalized": normalized_accuracy(sa, task.chance)}}
        save_checkpoint(root / "zoo" / name, model, spec, {"construction": model.construction, "seed": 0},
                        metrics, seed=0)
        plan.append(Run(name, spec, vkey, 0))
    if echo:
        res = echo_state_parity(d_hidden=2, n_draws=3, readout_steps=40, n_sequences=32,
                                odd_length=21, even_length=22)
        atomic_write_json(root / "experiments" / "echo_parity_H2.json",
                          {"name": "echo_parity_H2", "options": {"d_hidden": 2, "n_draws": 3}, **res.to_dict()})
    write_tables(root, plan=plan)
    return root


if __name__ == "__main__":  # python tests/_fake_zoo.py DIR [larger]: a zoo to look at by hand
    import sys

    build_fake_zoo(sys.argv[1], LARGER if "larger" in sys.argv[2:] else SMALL)
    print(f"fake zoo written to {sys.argv[1]}")
