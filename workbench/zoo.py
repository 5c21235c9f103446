"""The model zoo: a declarative plan of training runs, a resumable parallel builder, the results
tables and the reproduction table against the paper.

``python -m workbench zoo build [--jobs 2] [--only PATTERN] [--backend local|ray [--address ADDR]]
[--device auto|cpu|cuda]`` trains every run of :func:`zoo_plan` whose checkpoint is not finished
yet (each run also resumes from its own training state), as separate processes (or Ray tasks)
with one thread each (:func:`run_plan`), then writes ``checkpoints/results.csv``,
``checkpoints/results.md`` and ``checkpoints/index.json``. ``zoo list`` shows the plan and status.

Layout under the zoo root (``checkpoints/`` by default)::

    zoo/<run name>/          one checkpoint folder per run (model.safetensors, config.json, metrics.json)
    experiments/<name>.json  runs that are not a single checkpoint (frozen random diagonal on parity)
    index.json               name -> folder, task, variant, seed, accuracy at 500
    results.csv, results.md  every run, and the reproduction table beside the paper's numbers
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench.variants import EXTENDED_KEYS, GROUP_KEYS, HIERARCHY_KEYS, LR_GRID_KEYS, PAPER_CYCLIC_ROWS, PAPER_FSM_ROWS, WD_GRID_KEYS, ZOO_KEYS

# ---------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------

#: Variant keys of the zoo -> TrainConfig fields. ``block1`` is the real diagonal (block size 1)
#: of the paper's table; ``posdiag1/2`` are the Mamba-like positive diagonals with 1 and 2 layers.
#: Learning-rate grid (tried in order, first to solve the validation sets wins; the paper used
#: best of 3) for the 2x2-block variants (block2, rotation, complex_diag). Measured: their
#: failures at the single default 1e-2 are optimisation luck, not capacity (cyclic:5
#: complex_diag seed 0 fails at 1e-2 and solves at 3e-3 and 3e-2; rotation seed 1 fails at 1e-2
#: and 3e-3, solves at 3e-2 in 750 steps), and one of their steps costs ~1 ms, so the grid is
#: affordable; the dense variants (full, cp, block1 at large vocabularies) keep one rate to fit
#: the zoo's hour. This gives these variants more tries than the others: say so when comparing.
LR_GRID = (1e-2, 3e-2, 3e-3)
#: Weight-decay grid for the variants with dense per-token matrices (full, cp): first without,
#: then with decoupled weight decay 1.0 (AdamW), first to solve the validation sets wins.
#: Measured (seed 0, full): without decay the random FSMs fit lengths <= 20 and drift beyond
#: (fsm:2 0.50 raw at 500, fsm:5 0.81), because directions the training lengths never exercise
#: keep eigenvalues near 1 from the identity init and slowly take over; with decay 1.0 they
#: shrink away (fsm:2 and fsm:5 1.00, fsm:10 0.96). Decay 1.0 stops the large-vocabulary group
#: tasks from learning at all (cyclic:50 0.04, A5 0.02 raw), so it is a second try, not the
#: default. Both settings use the same learning rate.
WD_GRID = {"lr": (1e-2, 1e-2), "weight_decay": (0.0, 1.0)}


def _zoo_fields(key: str) -> dict:
    z = ZOO_KEYS[key]
    grid = {"lr": LR_GRID} if key in LR_GRID_KEYS else WD_GRID if key in WD_GRID_KEYS else {}
    return {"variant": z.variant, **z.options, **grid}


#: Zoo key -> TrainConfig fields (the registry's architecture options plus the grids above).
VARIANT_KEYS: dict[str, dict] = {key: _zoo_fields(key) for key in ZOO_KEYS}

HIERARCHY_TASKS = ("cyclic:2", "cyclic:3", "cyclic:5", "cyclic:10", "cyclic:25", "cyclic:50",
                   "fsm:2", "fsm:5", "fsm:10", "fsm:25")
HIERARCHY_VARIANTS = HIERARCHY_KEYS
GROUP_TASKS = ("modarith:5", "group:S3", "group:D4", "group:A5", "group:S3/gens", "group:D4/gens",
               "group:A5/gens")
SEEDS = (0, 1, 2)


#: Zoo cells (task, variant key) trained with the `collapse` recipe (workbench.recipes; paper
#: protocol + the state-collapse objective) instead of `paper`: the cells where `paper` fell short
#: of the paper's numbers and `collapse` reached them in every seed
#: (checkpoints/experiments/collapse_targets, modarith_collapse). Only these were retrained, so the
#: zoo states per model which recipe made it (index.json `recipe`); the other cells keep `paper`.
COLLAPSE_CELLS = frozenset({
    ("fsm:2", "full"), ("fsm:5", "full"), ("fsm:10", "full"), ("fsm:25", "full"), ("modarith:5", "full"),
    ("cyclic:3", "block2"), ("cyclic:50", "block2"), ("cyclic:2", "rotation"),
})


#: The extended table (beyond the paper's protocol): group and cyclic tasks, bilinear variants that
#: solve some of them at 500, trained with this recipe (workbench.recipes) and scored at
#: ``EXTENDED_LENGTHS`` with ``EXTENDED_SEQUENCES`` test sequences as learned (no snapping). Run
#: names carry the recipe (``groupS3_full_anchor_s0``), so both tables live side by side. Each
#: extended model is made in two runs: ``EXTENDED_PARENT_RECIPE`` trains it
#: (``groupS3_full_horizon_s0``), and the ``EXTENDED_RECIPE`` run starts from that checkpoint
#: (``TrainConfig.init_from``) and adds the anchor phase, so the phase can change without
#: retraining, and the table says what each stage did.
EXTENDED_RECIPE = "anchor"
EXTENDED_PARENT_RECIPE = "horizon"
EXTENDED_TASKS = ("cyclic:2", "cyclic:3", "cyclic:5", "cyclic:10", "cyclic:25", "cyclic:50",
                  "group:S3", "group:D4", "group:A5", "group:S3/gens", "group:D4/gens", "group:A5/gens")
#: The extended runs' step cap, in units of :func:`step_cap`: the long validation stops a run only
#: once it holds at 10,000, so the runs need more room than the paper-protocol ones.
EXTENDED_STEP_FACTOR = 1.5
EXTENDED_LENGTHS = (10_000,)
EXTENDED_SEQUENCES = 64


def extended_cells() -> list[tuple[str, str]]:
    """(task, variant key) of the extended table: every variant on the cyclic tasks, the dense
    ones (:data:`GROUP_KEYS`) on the groups, as in the paper-protocol table."""
    return [(t, v) for v in EXTENDED_KEYS for t in EXTENDED_TASKS
            if t.startswith("cyclic") or v in GROUP_KEYS]


def _recipe_options(task: str, recipe: str) -> tuple:
    from workbench.recipes import get_recipe
    from workbench.tasks import make_task

    fields = {**get_recipe(recipe).fields_for(make_task(task)), "recipe": recipe}
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in fields.items()))


def is_extended(run: "Run") -> bool:
    """A run of the extended table (recipe :data:`EXTENDED_RECIPE`)."""
    return dict(run.options).get("recipe") == EXTENDED_RECIPE


def is_extended_protocol(run: "Run") -> bool:
    """A run whose recipe leaves the paper's protocol (the extended table and its parents)."""
    return _protocol_of(dict(run.options).get("recipe") or "paper") == "extended"


def _starts_from(run: "Run") -> str | None:
    return dict(run.options).get("init_from")


#: Zoo cells trained with `collapse_gap` (the default of `train`): cp on cyclic:50, which no
#: other setting lifted from chance on the paper's protocol and the gap form solved in every seed
#: (checkpoints/experiments/cp_cyclic50_gap).
COLLAPSE_GAP_CELLS = frozenset({("cyclic:50", "cp")})


def _cell_options(task: str, variant_key: str) -> tuple:
    """Recipe fields of a zoo cell: those of `collapse` for :data:`COLLAPSE_CELLS`, of
    `collapse_gap` for :data:`COLLAPSE_GAP_CELLS`, else only the name `paper` (a label: the
    fingerprint, and so the finished checkpoints, stay the same)."""
    if (task, variant_key) in COLLAPSE_GAP_CELLS:
        return _recipe_options(task, "collapse_gap")
    if (task, variant_key) not in COLLAPSE_CELLS:
        return (("recipe", "paper"),)
    return _recipe_options(task, "collapse")


@dataclass(frozen=True)
class Run:
    """One entry of the plan. ``kind`` is ``"train"`` (one checkpoint) or ``"echo_state"``."""
    name: str
    task: str
    variant_key: str
    seed: int = 0
    kind: str = "train"
    options: tuple = ()          # extra (key, value) pairs, e.g. (("d_hidden", 4), ("n_draws", 100))

    def train_config(self):
        from workbench.training import TrainConfig

        fields = {"steps": step_cap(self.task, self.variant_key), **VARIANT_KEYS[self.variant_key],
                  **dict(self.options)}
        return TrainConfig(task=self.task, seed=self.seed, **fields)


def task_tag(spec: str) -> str:
    """``"group:S3/gens"`` -> ``"groupS3_gens"`` (run names are file names)."""
    return spec.replace(":", "").replace("/", "_").replace("@", "at")


#: Step-cap rule (see :func:`step_cap`): ``clip(CAP_BASE + CAP_PER_STATE * n_states, ..., CAP_MAX)``.
CAP_BASE, CAP_PER_STATE, CAP_MAX = 3000, 60, 6000
#: The transformer's cap: it fails length 500 in the paper and here (no recurrence to extrapolate
#: with), and one step costs ~10x a recurrent one on this CPU (attention over T <= 10 in training,
#: but evaluation at T = 500), so its cells run to this bounded cap to fit the zoo's hour.
TRANSFORMER_CAP = 500



def task_size(spec: str) -> int:
    """Number of states of the task's minimal automaton (``cyclic:m`` -> m, ``fsm:n`` -> n)."""
    kind, _, arg = spec.partition(":")
    if kind in ("cyclic", "fsm") and arg:
        try:
            return int(arg.split(":")[0].split("@")[0])
        except ValueError:
            pass
    return _task_size_slow(spec)


_SIZE_CACHE: dict[str, int] = {}


def _task_size_slow(spec: str) -> int:
    if spec not in _SIZE_CACHE:
        from workbench.tasks import make_task

        _SIZE_CACHE[spec] = int(make_task(spec).automaton.n_states)
    return _SIZE_CACHE[spec]


def step_cap(spec: str, variant_key: str | None = None) -> int:
    """The step cap of a zoo run: a rule of the task's size (never of how a variant did).

    ``min(CAP_MAX, CAP_BASE + CAP_PER_STATE * n_states)`` with ``n_states`` the task's number of
    automaton states: 3,120 steps for cyclic:2, 3,300 for cyclic:5, 4,500 for cyclic:25 and
    6,000 for cyclic:50, A5 and modarith:5 (measured: full solves cyclic:50 in 4,500-5,500
    steps and A5 in 4,250). The only variant-dependent exception is the
    transformer (``TRANSFORMER_CAP``), whose cost per step is ~10x and which fails anyway.

    Solvable runs stop early once the validation sets (every step up to 50, then every step up
    to 1,000) are solved; failing ones run to the cap, so the cap bounds the cost of the zoo.
    """
    if variant_key == "transformer":
        return TRANSFORMER_CAP
    return int(min(CAP_MAX, CAP_BASE + CAP_PER_STATE * task_size(spec)))


def estimate_seconds(run: "Run") -> float:
    """Worst-case single-thread seconds of a run (every step to its cap), from a rough cost model."""
    if run.kind != "train":
        return 30.0
    cap = dict(run.options).get("steps", step_cap(run.task, run.variant_key))
    cap *= len(VARIANT_KEYS.get(run.variant_key, {}).get("lr", (0,)))   # worst case: every rate
    scale = 1.0
    z = ZOO_KEYS.get(run.variant_key)
    if z is not None and z.dense:
        # dense per-token matrices: cost grows with vocabulary x H^2 (A5: 60 tokens, H = 64)
        scale = max(1.0, task_size(run.task) / 16)
    if z is None:
        return cap * 3e-3 * scale + 3.0
    return cap * z.sec_per_step * scale + z.sec_per_run


def _priority(run: "Run") -> tuple:
    """Build order: what an interrupted build must already have comes first.

    0: ``full`` seed 0 on every task; 1: group tasks (seed 0 then other seeds); 2: the hierarchy's
    seed 0 of every other variant (transformer last); 3: ``full`` seeds 1-2; 4: other seeds;
    5: ablations and experiments; 6: transformer seeds 1-2; 7: the extended table, variant by
    variant (:data:`EXTENDED_KEYS`).
    """
    group = run.task in GROUP_TASKS
    if is_extended_protocol(run):
        # a run that starts from another's checkpoint comes after it (run_plan also waits)
        return (7, EXTENDED_KEYS.index(run.variant_key), run.seed, _starts_from(run) is not None)
    if run.kind != "train" or run.variant_key == "full_additive":
        tier = 5
    elif run.variant_key == "full" and run.seed == 0:
        tier = 0
    elif group:
        tier = 1
    elif run.seed == 0:
        tier = 2
    elif run.variant_key == "transformer":
        tier = 6
    elif run.variant_key == "full":
        tier = 3
    else:
        tier = 4
    return (tier, run.seed, run.variant_key == "transformer")


def zoo_plan() -> list[Run]:
    """Every run of the zoo, in build order (:func:`_priority`; stable within a tier)."""
    runs: list[Run] = []
    for task in HIERARCHY_TASKS:
        for v in HIERARCHY_VARIANTS:
            for s in SEEDS:
                runs.append(Run(f"{task_tag(task)}_{v}_s{s}", task, v, s, options=_cell_options(task, v)))
    for task in GROUP_TASKS:
        for v in GROUP_KEYS:
            for s in SEEDS:
                runs.append(Run(f"{task_tag(task)}_{v}_s{s}", task, v, s, options=_cell_options(task, v)))
    for task in ("parity", "cyclic:5"):
        for s in SEEDS:
            runs.append(Run(f"{task_tag(task)}_full_additive_s{s}", task, "full_additive", s))
    for H in (2, 4, 8):
        runs.append(Run(f"echo_parity_H{H}", "parity", "block1", 0, kind="echo_state",
                        options=(("d_hidden", H), ("n_draws", 100))))
    from workbench.recipes import ANCHOR_FIELDS

    for task, v in extended_cells():
        for s in SEEDS:
            steps = int(EXTENDED_STEP_FACTOR * step_cap(task, v))
            parent = Run(f"{task_tag(task)}_{v}_{EXTENDED_PARENT_RECIPE}_s{s}", task, v, s,
                         options=tuple(sorted(_recipe_options(task, EXTENDED_PARENT_RECIPE) + (("steps", steps),))))
            fields = {**dict(parent.options), **ANCHOR_FIELDS, "recipe": EXTENDED_RECIPE,
                      "init_from": parent.name, "init_fingerprint": parent.train_config().fingerprint()}
            runs += [parent, Run(f"{task_tag(task)}_{v}_{EXTENDED_RECIPE}_s{s}", task, v, s,
                                 options=tuple(sorted(fields.items())))]
    return sorted(runs, key=_priority)


def select(plan: list[Run], only: str | None) -> list[Run]:
    """Runs whose name matches any of the comma-separated globs in ``only`` (all if None)."""
    if not only:
        return list(plan)
    pats = [p.strip() for p in only.split(",") if p.strip()]
    out = [r for r in plan if any(fnmatch.fnmatchcase(r.name, p) for p in pats)]
    if not out:
        raise ValueError(f"--only {only!r} matches no run of the plan (names look like "
                         f"'cyclic5_full_s0', 'groupS3_gens_cp_s1', 'echo_parity_H4')")
    return out


def _root(root) -> Path:
    from workbench.checkpoints import zoo_root

    return Path(root) if root is not None else zoo_root()


def run_dir(run: Run, root) -> Path:
    if run.kind == "echo_state":
        return _root(root) / "experiments"
    return _root(root) / "zoo" / run.name


def is_finished(run: Run, root) -> bool:
    """A finished checkpoint (or experiment file) made with this run's exact config."""
    root = _root(root)
    if run.kind == "echo_state":
        p = run_dir(run, root) / f"{run.name}.json"
        try:
            return json.loads(p.read_text()).get("options") == dict(run.options)
        except (OSError, ValueError):
            return False
    d = run_dir(run, root)
    try:
        conf = json.loads((d / "config.json").read_text())
        json.loads((d / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return conf.get("training", {}).get("fingerprint") == run.train_config().fingerprint() \
        and (d / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------------

def _worker_init():
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def execute(run: Run, root=None, progress: bool = False, device: str = "auto") -> dict:
    """Train (or resume, or reuse) one run; returns a small summary dict.

    ``device`` (``auto``/``cpu``/``cuda``/``cuda:N``) is where the run trains; it is not part of
    the run's fingerprint, so a run finished on one device counts as finished on any.
    """
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if run.kind == "echo_state":
        opts = dict(run.options)
        res = echo_state_parity(d_hidden=opts["d_hidden"], n_draws=opts["n_draws"], seed=run.seed)
        out = run_dir(run, root)
        from workbench.checkpoints import atomic_write_json

        atomic_write_json(out / f"{run.name}.json", {"name": run.name, "options": opts, **res.to_dict()})
        return {"name": run.name, "wall_s": time.perf_counter() - t0,
                "summary": f"opposite-sign rate {res.opposite_sign_rate:.2f} (predicted "
                           f"{res.predicted_rate:.2f}), success odd {res.success_rate_odd:.2f} "
                           f"even {res.success_rate_even:.2f}"}
    from workbench.training import train

    import dataclasses

    cfg = dataclasses.replace(run.train_config(), device=device)
    res = train(cfg, run_dir(run, root), progress=progress, threads=1)
    return {"name": run.name, "wall_s": time.perf_counter() - t0, "steps": res.steps,
            "train_time_s": res.train_time_s, "reused": res.reused,
            "summary": f"steps {res.steps:>5}  acc500 {res.accuracy.get(500, float('nan')):.3f}  "
                       f"norm500 {res.normalized_accuracy.get(500, float('nan')):.3f}  "
                       f"{res.train_time_s:.1f}s"}


BACKENDS = ("local", "ray")


def run_plan(todo: list[Run], root=None, jobs: int = 2, backend: str = "local",
             address: str | None = None, device: str = "auto", progress: bool = True) -> list[tuple[str, str]]:
    """Train every run of ``todo`` (the one place that runs a plan: the zoo and the grids).

    Parameters
    ----------
    todo : runs to execute; each skips itself when finished and resumes from its own training
        state when interrupted (:func:`execute` -> :func:`workbench.training.train`), so the
        backend only decides *where* runs execute, never what they write.
    root : zoo folder. With Ray on a cluster every node must see it at the same path (a shared
        file system): the workers write the checkpoints there, exactly as local workers do.
    jobs : local: processes (1 = in this process); ray: CPUs of the Ray started for the build
        (ignored with ``address``: the cluster's resources decide).
    backend : ``"local"`` (process pool, one thread each) or ``"ray"`` (one Ray task per run,
        ``num_cpus=1``, plus ``num_gpus=1`` when the runs train on CUDA).
    address : Ray cluster to join (``ray start --head`` prints it; ``"auto"`` finds a local one);
        None starts a private Ray on this machine for the build and stops it afterwards.
    device : training device of every run (see :mod:`workbench.devices`).

    Returns
    -------
    list of (run name, error) for the runs that failed; the others finished.
    """
    from workbench.devices import check_device_spec, resolve_device

    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; accepted: {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise ValueError(f"address={address!r} needs backend='ray'")
    check_device_spec(device)
    if backend == "local":
        resolve_device(device)   # "cuda" on a machine without: one clear error before any run

    failures: list[tuple[str, str]] = []
    if not todo:
        return failures
    t0 = time.perf_counter()
    # Runs that start from another run's checkpoint (TrainConfig.init_from) go in a second wave,
    # once every run of the first has finished.
    waves = [[r for r in todo if _starts_from(r) is None], [r for r in todo if _starts_from(r) is not None]]
    done = [0]

    def report(r, summary=None, error=None):
        done[0] += 1
        i = done[0]
        if error is not None:
            failures.append((r.name, error))
            print(f"[{i}/{len(todo)}] {r.name:<32} FAILED {error}", flush=True)
        else:
            print(f"[{i}/{len(todo)}] {r.name:<32} {summary}  "
                  f"({time.perf_counter() - t0:.0f}s elapsed)", flush=True)

    for wave in waves:
        if not wave:
            continue
        if backend == "ray":
            _run_ray(wave, str(_root(root)), jobs, address, device, report)
        elif jobs == 1:
            for r in wave:
                try:
                    report(r, execute(r, root, progress, device)["summary"])
                except Exception as e:  # one failed run must not stop the build
                    report(r, error=f"{type(e).__name__}: {e}")
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn: fresh interpreters, no forked torch thread pools; each imports once and
            # runs many trainings.
            with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as ex:
                futs = {ex.submit(execute, r, str(_root(root)), False, device): r for r in wave}
                for f in as_completed(futs):
                    try:
                        report(futs[f], f.result()["summary"])
                    except Exception as e:
                        report(futs[f], error=f"{type(e).__name__}: {e}")
    return failures


def _ray_execute(run: Run, root: str, device: str) -> dict:
    """A Ray task: one run with one thread (Ray also sets OMP_NUM_THREADS=1 for num_cpus=1)."""
    _worker_init()
    return execute(run, root, False, device)


def _ray_gpus(ray, device: str) -> int:
    """GPUs per task: 1 when the runs train on CUDA (``auto``: when the cluster has GPUs)."""
    have = ray.cluster_resources().get("GPU", 0)
    if device.startswith("cuda"):
        if not have:
            raise ValueError(f"device={device!r} but the Ray cluster has no GPUs "
                             f"(resources {ray.cluster_resources()}); accepted here: cpu, auto")
        return 1
    return 1 if device == "auto" and have else 0


def _start_local_ray(ray, jobs: int, attempts: int = 3) -> None:
    """A private single-machine Ray: loopback, no dashboard, a small object store (runs exchange
    only a summary dict; checkpoints go straight to the file system).

    Ray gives its node 30 s (a constant in ``ray._private.node``) to register; on a loaded
    2-core machine its half-dozen helper processes can take longer to start, so a start that
    times out is retried.
    """
    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=jobs, include_dashboard=False, _node_ip_address="127.0.0.1",
                     object_store_memory=100 * 2**20, log_to_driver=False, configure_logging=False)
            return
        except Exception as e:
            if "timed out during startup" not in str(e) or attempt == attempts:
                raise
            ray.shutdown()
            print(f"zoo build: Ray did not start in time (attempt {attempt} of {attempts}); retrying",
                  file=sys.stderr, flush=True)


def _run_ray(todo, root: str, jobs: int, address, device: str, report) -> None:
    try:
        import ray
    except ModuleNotFoundError:
        raise ValueError("backend 'ray' needs the ray package: pip install 'bilinear-workbench[ray]' "
                         "(or pip install ray)") from None
    started = False
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            _start_local_ray(ray, jobs)
        started = True
    try:
        gpus = _ray_gpus(ray, device)
        # A GPU task trains on the GPU Ray assigns it (CUDA_VISIBLE_DEVICES); a CPU task must
        # not pick one up through "auto".
        task_device = "cuda" if gpus else ("cpu" if device == "auto" else device)
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(_ray_execute)
        pending = {remote.remote(r, root, task_device): r for r in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                r = pending.pop(ref)
                try:
                    report(r, ray.get(ref)["summary"])
                except Exception as e:
                    cause = getattr(e, "cause", None) or e   # RayTaskError wraps the worker's error
                    report(r, error=f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}")
    finally:
        if started:
            ray.shutdown()


def build(root=None, jobs: int = 2, only: str | None = None, dry_run: bool = False,
          progress: bool = True, plan: list[Run] | None = None, backend: str = "local",
          address: str | None = None, device: str = "auto") -> int:
    """Train every selected run that is not finished (:func:`run_plan`), then write tables.

    ``backend``/``address``/``device``: see :func:`run_plan`. Returns 0, or 1 when some runs
    failed (they are listed; rerunning retries them).
    """
    root = _root(root)
    full_plan = plan if plan is not None else zoo_plan()
    plan = select(full_plan, only)
    todo = [r for r in plan if not is_finished(r, root)]
    where = f"{jobs} process(es)" if backend == "local" else \
        ("Ray at " + address if address else f"a local Ray with {jobs} CPU(s)")
    print(f"zoo build: {len(plan)} runs selected, {len(plan) - len(todo)} finished, "
          f"{len(todo)} to train on {where}; root {root}", flush=True)
    if dry_run:
        total = 0.0
        for r in todo:
            est = estimate_seconds(r)
            total += est
            cap = r.train_config().steps if r.kind == "train" else "-"
            print(f"  {r.name}  ({r.task}, {r.variant_key}, seed {r.seed}, cap {cap}, "
                  f"<= ~{est:.0f}s)")
        print(f"estimate: <= ~{total / 60:.0f} min of one core if every run hit its cap, "
              f"<= ~{total / 60 / max(1, jobs):.0f} min wall with {jobs} process(es); runs that "
              f"solve stop early (rough cost model: zoo._SEC_PER_STEP)")
        return 0
    if backend == "local":
        from workbench.devices import resolve_device

        resolve_device(device)   # fail before the tables are touched
    t0 = time.perf_counter()
    failures = run_plan(todo, root, jobs=jobs, backend=backend, address=address, device=device,
                        progress=progress)
    rescore_step_accuracy(root, plan=full_plan, progress=progress)
    score_long([r for r in full_plan if is_extended_protocol(r)], root, EXTENDED_LENGTHS, EXTENDED_SEQUENCES,
               progress)
    paths = write_tables(root, plan=full_plan)
    print(f"zoo build: done in {time.perf_counter() - t0:.0f}s; wrote {', '.join(p.name for p in paths)}")
    if failures:
        print(f"{len(failures)} run(s) failed (rerun the same command to retry):", file=sys.stderr)
        for n, msg in failures:
            print(f"  {n}: {msg}", file=sys.stderr)
        return 1
    return 0


def print_list(root=None, only: str | None = None, plan: list[Run] | None = None) -> None:
    root = _root(root)
    plan = plan if plan is not None else zoo_plan()
    rows = {r["name"]: r for r in collect_rows(root, plan)}
    for run in select(plan, only):
        if run.name in rows:
            r = rows[run.name]
            status = f"done   acc500 {_fmt(r['acc_500'])}  norm500 {_fmt(r['norm_500'])}  steps {r['steps']}"
        elif run.kind == "echo_state" and is_finished(run, root):
            status = "done"
        else:
            status = "todo"
        print(f"{run.name:<34} {run.task:<14} {run.variant_key:<13} {status}")


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------

#: The paper's numbers (accuracy at length 500, chance-normalized; ``workbench.variants``).
#: Keys: (zoo variant key, task spec). The Mamba row (1/2/4 layers) stands for posdiag1/posdiag2.
_CYC = ("cyclic:2", "cyclic:3", "cyclic:5", "cyclic:10", "cyclic:25", "cyclic:50")
_FSM = ("fsm:2", "fsm:5", "fsm:10", "fsm:25")
PAPER_RESULTS: dict[tuple[str, str], float] = {}
for _v, _vals in PAPER_CYCLIC_ROWS.items():
    PAPER_RESULTS.update({(_v, t): x for t, x in zip(_CYC, _vals, strict=True)})
for _v, _vals in PAPER_FSM_ROWS.items():
    PAPER_RESULTS.update({(_v, t): x for t, x in zip(_FSM, _vals, strict=True)})
PAPER_RESULTS[("cp", "cyclic:50")] = 0.95
PAPER_RESULTS[("full", "modarith:5")] = 1.00

CSV_FIELDS = ("name", "task", "variant_key", "variant", "seed", "d_hidden", "steps", "train_time_s",
              "lr", "acc_10", "acc_50", "acc_500", "norm_10", "norm_50", "norm_500",
              "step_acc_500", "step_norm_500", "solved_validation", "recipe", "acc_10000", "anchor")

#: Length of the per-step score: accuracy at *every* step 1..STEP_LENGTH of the test sequences.
STEP_LENGTH = 500


def step_accuracy(model, task, length: int = STEP_LENGTH, n_sequences: int = 512, seed: int = 0) -> float:
    """Mean accuracy over every step 1..length of the test set (normalization on, eval mode),
    counting the steps that end a whole input (``task.scored_steps``; all steps except modarith
    prefixes that end in an operator).

    Why beside final-step accuracy: a model can be right at the final step of one length and wrong
    in between (early stopping on final-step validation at lengths 50 and 500 selects rotation
    models on parity right at 10/50/500 and at chance at most other lengths). Scoring every
    prefix of the length-500 sequences catches that; training validates the same way
    (``TrainConfig.val_mode``).
    """
    from workbench.training import validation_accuracy

    # The same score early stopping uses, on the test sets (seed 0) instead of the validation sets.
    return validation_accuracy(model, task, length, n_sequences, mode="every_step", seed=seed)


def rescore_step_accuracy(root=None, plan: list[Run] | None = None, progress: bool = True) -> int:
    """Add ``step_accuracy`` to every finished run's metrics.json that lacks it; returns how many.

    metrics.json is rewritten atomically; the weights and their hash are not touched.
    """
    from workbench.checkpoints import atomic_write_json, load_checkpoint
    from workbench.training import normalized_accuracy

    root = _root(root)
    todo = []
    for run in (plan if plan is not None else zoo_plan()):
        d = run_dir(run, root)
        if run.kind != "train" or not (d / "metrics.json").exists() or not (d / "config.json").exists():
            continue
        m = json.loads((d / "metrics.json").read_text())
        if "step_accuracy" not in m:
            todo.append((d, m))
    from tqdm.auto import tqdm
    for d, m in tqdm(todo, disable=not progress, desc="per-step accuracy"):
        model, task = load_checkpoint(str(d))
        acc = step_accuracy(model, task)
        m["step_accuracy"] = {"length": STEP_LENGTH, "accuracy": acc,
                              "normalized": normalized_accuracy(acc, task.chance)}
        atomic_write_json(d / "metrics.json", m)
    return len(todo)


def score_long(runs: list[Run], root, lengths, n_sequences: int, progress: bool = False) -> int:
    """Add ``long_accuracy`` at ``lengths`` (``n_sequences`` test sequences, seed 0) to the
    finished ``runs`` lacking it, in their metrics.json; returns how many were scored."""
    from workbench.checkpoints import atomic_write_json, load_checkpoint
    from workbench.training import evaluate

    root = _root(root)
    n = 0
    for run in runs:
        if run.kind != "train" or not is_finished(run, root):
            continue
        d = run_dir(run, root)
        m = json.loads((d / "metrics.json").read_text())
        have = m.get("long_accuracy", {})
        todo = [L for L in lengths if have.get(str(L), {}).get("n_sequences") != n_sequences]
        if not todo:
            continue
        model, task = load_checkpoint(str(d))
        acc = evaluate(model, task, todo, n_sequences, seed=0)
        for L in todo:
            have[str(L)] = {"accuracy": acc[L], "n_sequences": n_sequences, "seed": 0}
        m["long_accuracy"] = have
        atomic_write_json(d / "metrics.json", m)
        n += 1
        if progress:
            print(f"  long: {run.name} " + " ".join(f"{L}: {acc[L]:.3f}" for L in todo), flush=True)
    return n


def collect_rows(root=None, plan: list[Run] | None = None) -> list[dict]:
    """One row per finished training run of the plan (JSON only: no model is loaded)."""
    root = _root(root)
    rows = []
    for run in (plan if plan is not None else zoo_plan()):
        if run.kind != "train":
            continue
        d = run_dir(run, root)
        try:
            conf = json.loads((d / "config.json").read_text())
            m = json.loads((d / "metrics.json").read_text())
        except (OSError, ValueError):
            continue
        acc, norm = m.get("accuracy", {}), m.get("normalized_accuracy", {})
        rows.append({
            "name": run.name, "task": run.task, "variant_key": run.variant_key,
            "variant": conf["model"]["variant"], "seed": run.seed, "d_hidden": conf["model"]["d_hidden"],
            "steps": m.get("steps"), "train_time_s": round(m.get("train_time_s", float("nan")), 2),
            "lr": m.get("lr"),
            **{f"acc_{L}": acc.get(str(L)) for L in (10, 50, 500)},
            **{f"norm_{L}": norm.get(str(L)) for L in (10, 50, 500)},
            "step_acc_500": m.get("step_accuracy", {}).get("accuracy"),
            "step_norm_500": m.get("step_accuracy", {}).get("normalized"),
            "solved_validation": m.get("solved_validation"),
            "recipe": recipe_of(conf.get("training", {})),
            "acc_10000": m.get("long_accuracy", {}).get("10000", {}).get("accuracy"),
            "anchor": _anchor_outcome(m.get("anchor")),
        })
    return rows


def _anchor_outcome(record: dict | None) -> str | None:
    """``"skipped"``, ``"kept"`` or ``"reverted"`` for a run with an anchor phase, else None."""
    if not record:
        return None
    return "skipped" if record.get("skipped") else ("kept" if record.get("kept") else "reverted")


def anchor_outcomes(rows: list[dict]) -> dict[str, int]:
    """How often the anchor phase was skipped, kept or reverted over the extended table's rows."""
    out = {"skipped": 0, "kept": 0, "reverted": 0}
    for r in extended_rows(rows):
        if r.get("anchor") in out:
            out[r["anchor"]] += 1
    return out


def protocol_rows(rows: list[dict]) -> list[dict]:
    """The rows of the paper-protocol table (those whose recipe keeps the paper's protocol)."""
    return [r for r in rows if _protocol_of(r.get("recipe") or "paper") == "paper"]


def extended_rows(rows: list[dict], recipe: str = EXTENDED_RECIPE) -> list[dict]:
    """The rows of the extended table (recipe :data:`EXTENDED_RECIPE`; or of its parents,
    ``recipe=EXTENDED_PARENT_RECIPE``)."""
    return [r for r in rows if r.get("recipe") == recipe]


@dataclass(frozen=True)
class HorizonSummary:
    """Of the extended table's models that score >= ``threshold`` at 500, how many also do at
    ``length`` as learned. ``total`` 0 means nothing to count yet."""
    held: int
    total: int
    length: int
    threshold: float
    failing: tuple = ()          # names of the models that solve 500 and not ``length``
    recipe: str = EXTENDED_RECIPE

    @property
    def fraction(self) -> float:
        return self.held / self.total if self.total else float("nan")

    def summary(self) -> dict:
        return {"held": self.held, "total": self.total, "fraction": self.fraction, "recipe": self.recipe,
                "length": self.length, "threshold": self.threshold, "failing": list(self.failing)}

    def __repr__(self) -> str:
        return f"HorizonSummary({self.held}/{self.total} hold at {self.length:,})"

    def plot(self, ax=None):
        """Bar of the models that hold and those that do not; returns the axes."""
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(4, 2.2))[1]
        ax.barh(["hold", "fail"], [self.held, self.total - self.held], color=["#4a8", "#c55"])
        ax.set_xlabel(f"models solving 500 (acc >= {self.threshold:g} at {self.length:,})")
        return ax

    def sentence(self) -> str:
        what = "extended-table models" if self.recipe == EXTENDED_RECIPE else f"`{self.recipe}` models"
        if not self.total:
            return f"No {what} score >= {self.threshold:g} at 500 yet."
        return (f"{self.held} of {self.total} {what} that score >= {self.threshold:g} "
                f"at length 500 also do at {self.length:,} as learned ({self.fraction:.1%}).")


def horizon_summary(rows: list[dict], length: int = 10_000, threshold: float = 0.99,
                    recipe: str = EXTENDED_RECIPE) -> HorizonSummary:
    """Count, over ``extended_rows(rows, recipe)`` scored at ``length``, the models that hold there."""
    key = f"acc_{length}"
    solved = [r for r in extended_rows(rows, recipe)
              if r.get("acc_500") is not None and r["acc_500"] >= threshold and r.get(key) is not None]
    failing = tuple(r["name"] for r in solved if r[key] < threshold)
    return HorizonSummary(len(solved) - len(failing), len(solved), length, threshold, failing, recipe)


def extended_cell_stats(rows: list[dict], length: int = 10_000) -> list[dict]:
    """Per (task, variant) of :func:`extended_cells`: ``(median, best)`` over seeds (None where
    nothing was measured) of the paper-protocol zoo's raw accuracy at 500 (``paper_500``) and of
    the extended recipe's at 500 (``ext_500``) and at ``length`` (``ext_long``); ``seeds``."""
    by = {}
    for r in rows:
        which = "ext" if r.get("recipe") == EXTENDED_RECIPE else "paper"
        by.setdefault((which, r["task"], r["variant_key"]), []).append(r)

    def mb(rs, key):
        vals = [r[key] for r in rs if r.get(key) is not None]
        return (statistics.median(vals), max(vals)) if vals else None

    out = []
    for task, v in extended_cells():
        ext = by.get(("ext", task, v), [])
        out.append({"task": task, "variant": v, "paper_500": mb(by.get(("paper", task, v), []), "acc_500"),
                    "ext_500": mb(ext, "acc_500"), "ext_long": mb(ext, f"acc_{length}"), "seeds": len(ext)})
    return out


def extended_table(rows: list[dict], length: int = 10_000) -> str:
    """Markdown of :func:`extended_cell_stats`: ``median / best`` per cell."""
    def mb(x):
        return f"{_fmt(x[0])} / {_fmt(x[1])}" if x else "—"

    lines = [f"| task | variant | paper protocol: acc 500 | {EXTENDED_RECIPE}: acc 500 | "
             f"{EXTENDED_RECIPE}: acc {length:,} | seeds |", "|---|---|---|---|---|---|"]
    for c in extended_cell_stats(rows, length):
        lines.append(f"| {c['task']} | {c['variant']} | {mb(c['paper_500'])} | {mb(c['ext_500'])} | "
                     f"{mb(c['ext_long'])} | {c['seeds']} |")
    return "\n".join(lines)


def _protocol_of(recipe: str) -> str:
    """``"paper"`` or ``"extended"``: the protocol of a named recipe (``paper`` for names that
    are no recipe of :mod:`workbench.recipes`: ``custom`` variations and constructions)."""
    from workbench.recipes import RECIPES

    base = recipe.split("+")[0]
    return RECIPES[base].protocol if base in RECIPES else "paper"


def recipe_of(training: dict) -> str:
    """The recipe name of a stored training config (``workbench.recipes.recipe_name_of``)."""
    from workbench.recipes import recipe_name_of

    return recipe_name_of(training)


def _fmt(x, nd=2):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def reproduction_table(rows: list[dict], tasks=_CYC + _FSM, variants=HIERARCHY_VARIANTS,
                       key: str = "norm_500") -> str:
    """Markdown table: chance-normalized accuracy at length 500 (``key``: final step
    ``norm_500`` or every step ``step_norm_500``), median and best over seeds, beside the
    paper's number: ``median / best (paper)``; ``—`` where there is nothing."""
    by = {}
    for r in rows:
        if r.get(key) is not None:
            by.setdefault((r["variant_key"], r["task"]), []).append(r[key])
    head = "| variant | " + " | ".join(tasks) + " |"
    lines = [head, "|" + "---|" * (len(tasks) + 1)]
    for v in variants:
        cells = []
        for t in tasks:
            vals = by.get((v, t))
            paper = PAPER_RESULTS.get((v, t))
            ours = f"{_fmt(statistics.median(vals))} / {_fmt(max(vals))}" if vals else "—"
            cells.append(f"{ours} ({_fmt(paper)})" if paper is not None else ours)
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tables(root=None, plan: list[Run] | None = None) -> list[Path]:
    """Write results.csv, results.md and index.json from the finished runs."""
    from workbench.checkpoints import atomic_write_bytes, atomic_write_csv, atomic_write_json

    root = _root(root)
    all_rows = collect_rows(root, plan)
    rows = protocol_rows(all_rows)
    cmd = "python -m workbench zoo build --jobs 2"
    atomic_write_csv(root / "results.csv", CSV_FIELDS, all_rows, cmd)

    md = [f"# Zoo results\n\nMade by `{cmd}` (`workbench/zoo.py`: plan, step cap rule, recipe). "
          "Accuracy is final-step accuracy on 512 test sequences per length (seed 0); "
          "normalized = (acc − chance)/(1 − chance).\n",
          "## Reproduction table (chance-normalized accuracy at length 500)\n",
          "Each cell: ours median / best over seeds (paper). Paper numbers: "
          "the paper's hierarchy tables; `posdiag1/2` are compared with the paper's Mamba row.\n",
          reproduction_table(rows), "",
          "### Group and modular-arithmetic tasks\n",
          reproduction_table(rows, tasks=GROUP_TASKS, variants=GROUP_KEYS), "",
          "### Affine ablation (`full` with additive term)\n",
          reproduction_table(rows, tasks=("parity", "cyclic:5"), variants=("full_additive",)), "",
          "### The same, scored at every step 1–500\n",
          "Mean accuracy over every prefix of the length-500 test sequences, chance-normalized "
          "(`workbench.zoo.step_accuracy`). A model can be right at the final step of length 500 and "
          "wrong at shorter lengths; where this table is lower than the one above, that is what "
          "happened. Training validates every step up to length 1,000 (other sequences), so it "
          "does not select for particular lengths.\n",
          reproduction_table(rows, key="step_norm_500"), "",
          reproduction_table(rows, tasks=GROUP_TASKS, variants=GROUP_KEYS, key="step_norm_500"), ""]
    echo = sorted((root / "experiments").glob("echo_parity_H*.json")) if (root / "experiments").is_dir() else []
    if echo:
        md += ["## Frozen random real diagonal on parity, readout trained on 2 examples\n",
               "| H | draws | opposite-sign rate | predicted 1 − 2^−H | success odd length | "
               "success even length | success both |", "|---|---|---|---|---|---|---|"]
        for p in echo:
            e = json.loads(p.read_text())
            md.append(f"| {e['d_hidden']} | {e['n_draws']} | {e['opposite_sign_rate']:.2f} | "
                      f"{e['predicted_rate']:.3f} | {e['success_rate_odd']:.2f} | "
                      f"{e['success_rate_even']:.2f} | {e['success_rate_both']:.2f} |")
        md.append("")
    if extended_rows(all_rows):
        md += [f"## Beyond the paper: the `{EXTENDED_RECIPE}` recipe at length {EXTENDED_LENGTHS[0]:,}\n",
               f"Raw final-step accuracy (512 test sequences at 500, {EXTENDED_SEQUENCES} at "
               f"{EXTENDED_LENGTHS[0]:,}, seed 0), as learned: no snapping. Recipe "
               f"`{EXTENDED_RECIPE}` (`workbench.recipes`) leaves the paper's protocol: each run starts "
               f"from its `{EXTENDED_PARENT_RECIPE}` sibling (paper's training data, validation at the "
               "long length) and adds the anchor phase (rollouts of 100 steps). Runs are named "
               f"`TASK_VARIANT_{EXTENDED_RECIPE}_sSEED`; the `anchor` column of results.csv says whether the phase "
               "was skipped (already perfect on validation), kept or undone.\n",
               "**" + horizon_summary(all_rows).sentence() + "** Before the anchor phase: "
               + horizon_summary(all_rows, recipe=EXTENDED_PARENT_RECIPE).sentence() + "\n",
               extended_table(all_rows), ""]
    md += ["## Every run\n",
           "| name | task | variant | seed | H | steps | time (s) | acc 10 | acc 50 | acc 500 | "
           "norm 10 | norm 50 | norm 500 | every step 1–500 (norm) |", "|" + "---|" * 14]
    for r in all_rows:
        md.append(f"| {r['name']} | {r['task']} | {r['variant_key']} | {r['seed']} | {r['d_hidden']} | "
                  f"{r['steps']} | {r['train_time_s']} | " + " | ".join(
                      _fmt(r[f'{k}_{L}']) for k in ('acc', 'norm') for L in (10, 50, 500))
                  + f" | {_fmt(r.get('step_norm_500'))} |")
    atomic_write_bytes(root / "results.md", ("\n".join(md) + "\n").encode())

    index = {"format_version": 1, "command": cmd, "models": {
        r["name"]: {"folder": f"zoo/{r['name']}", "task": r["task"], "variant": r["variant"],
                    "variant_key": r["variant_key"], "seed": r["seed"], "d_hidden": r["d_hidden"],
                    "accuracy_500": r["acc_500"], "normalized_500": r["norm_500"],
                    "recipe": r["recipe"], "protocol": _protocol_of(r["recipe"])} for r in all_rows}}
    atomic_write_json(root / "index.json", index)
    return [root / "results.csv", root / "results.md", root / "index.json"]


# ---------------------------------------------------------------------------------------------
# experiment: frozen random real diagonal learns parity from 2 examples (paper, Prop. 3)
# ---------------------------------------------------------------------------------------------

@dataclass
class EchoStateResult:
    """Frozen random real-diagonal transitions, readout trained on the 2 sequences "0" and "1".

    ``opposite_sign_rate``: fraction of draws with a unit whose two diagonal entries have
    opposite signs (the event of probability ``1 - 2^-H`` in the paper). ``success_rate_*``:
    fraction of draws whose parity accuracy at the odd (``odd_length``) / even length is at least
    ``threshold``. ``success_given_opposite``: success at both lengths among draws with such a unit.
    """
    d_hidden: int
    n_draws: int
    odd_length: int
    even_length: int
    threshold: float
    opposite_sign_rate: float
    predicted_rate: float
    success_rate_odd: float
    success_rate_even: float
    success_rate_both: float
    success_given_opposite: float
    accuracy_odd: list = field(default_factory=list)
    accuracy_even: list = field(default_factory=list)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def echo_state_parity(d_hidden: int = 4, n_draws: int = 100, seed: int = 0, odd_length: int = 499,
                      even_length: int = 500, threshold: float = 0.99, readout_steps: int = 300,
                      n_sequences: int = 512) -> EchoStateResult:
    """Run the experiment; draw ``d`` builds the model's frozen random real diagonal (random signs,
    magnitudes uniform in (0.5, 1.5), ``ModelConfig(freeze_transition=True)``) from seed
    ``seed*10**6+d``.

    Only the readout ``W_U`` is trained (Adam, lr 0.1, ``readout_steps`` steps, cross-entropy on
    the two length-1 sequences "0" -> 0 and "1" -> 1); the start state is fixed to
    ``ones/sqrt(H)`` so that a unit's sign after a sequence is the product of its diagonal signs.
    """
    import torch
    from workbench.models import ModelConfig, build_model
    from workbench.tasks import make_task
    from workbench.training import evaluate

    task = make_task("parity")
    cfg = ModelConfig(variant="real_diag", d_vocab=task.d_vocab, d_hidden=d_hidden,
                      n_classes=task.n_classes, freeze_transition=True, normalize=True)
    x = torch.tensor([[0], [1]])
    y = torch.tensor([0, 1])
    opp, acc_odd, acc_even = [], [], []
    for d in range(n_draws):
        torch.manual_seed(seed * 10**6 + d)
        model = build_model(cfg)
        tensors = dict(model.named_parameters())
        tensors.update(dict(model.named_buffers()))
        diag_name = next((k for k in tensors if k.endswith("W_diag")), None)
        h0_name = next((k for k in tensors if k.endswith("h0")), None)
        wu_name = next((k for k in tensors if k.endswith("W_U")), None)
        if diag_name is None or h0_name is None or wu_name is None:
            raise RuntimeError(f"real_diag model lacks W_diag/h0/W_U (has {sorted(tensors)})")
        with torch.no_grad():  # the model's frozen init: random signs, magnitudes in (0.5, 1.5)
            tensors[h0_name].fill_(1.0 / math.sqrt(d_hidden))
        for name, p in model.named_parameters():
            p.requires_grad_(name == wu_name)
        W = tensors[diag_name].detach()              # [2, H]
        opp.append(bool((torch.sign(W[0]) != torch.sign(W[1])).any()))
        opt = torch.optim.Adam([tensors[wu_name]], lr=0.1)
        model.train()
        for _ in range(readout_steps):
            loss = torch.nn.functional.cross_entropy(model(x)[:, -1], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        acc = evaluate(model, task, [odd_length, even_length], n_sequences, seed=0)
        acc_odd.append(acc[odd_length])
        acc_even.append(acc[even_length])
    so = [a >= threshold for a in acc_odd]
    se = [a >= threshold for a in acc_even]
    both = [a and b for a, b in zip(so, se, strict=True)]
    n_opp = sum(opp)
    return EchoStateResult(
        d_hidden=d_hidden, n_draws=n_draws, odd_length=odd_length, even_length=even_length,
        threshold=threshold, opposite_sign_rate=n_opp / n_draws, predicted_rate=1 - 2.0 ** -d_hidden,
        success_rate_odd=sum(so) / n_draws, success_rate_even=sum(se) / n_draws,
        success_rate_both=sum(both) / n_draws,
        success_given_opposite=(sum(b for b, o in zip(both, opp, strict=True) if o) / n_opp) if n_opp else float("nan"),
        accuracy_odd=acc_odd, accuracy_even=acc_even)


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------

def demo(seed: int = 0, progress: bool = True) -> None:
    """Train a full model on cyclic:5 (well under a minute) and show what its states do."""
    import torch
    from workbench.training import TrainConfig, evaluate, normalized_accuracy, train

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = train(TrainConfig(task="cyclic:5", seed=seed, eval_lengths=(10, 100, 500)), None, progress=progress)
    model = res.model
    from workbench.tasks import make_task

    task = make_task("cyclic:5")
    print(f"trained full bilinear RNN (H={model.cfg.d_hidden}) on cyclic:5 in "
          f"{time.perf_counter() - t0:.1f}s, {res.steps} steps, lengths 2-10")
    acc = evaluate(model, task, [10, 100, 500])
    print("accuracy at length 10 / 100 / 500: " + " / ".join(f"{acc[L]:.3f}" for L in (10, 100, 500))
          + f"  (chance {task.chance:.2f})")

    with torch.no_grad():
        A = model.transition_matrices().double()     # [V, H, H]
    print("\nper-token transitions A_a: the eigenvalues with the largest modulus, as phase x 5/2pi")
    print("(a Z5 representation has eigenvalues exp(2 pi i k a / 5): phase x 5/2pi near integers)")
    for a in range(task.d_vocab):
        ev = torch.linalg.eigvals(A[a])
        mod = ev.abs()
        top = ev[mod >= 0.9 * mod.max()]
        k = torch.angle(top) * 5 / (2 * math.pi)
        err = (k - k.round()).abs().max().item()
        ks = sorted({round(float(v), 3) for v in k})
        print(f"  token {a}: {len(top)} dominant eigenvalues, phase x 5/2pi = {ks}  "
              f"(max distance to an integer {err:.3f})")

    batch = task.eval_set(8, 1, seed=1)
    logits, cache = model.run_with_cache(batch.tokens, names_filter=lambda n: n == "blocks.0.hook_state")
    states = cache["blocks.0.hook_state"][0]          # [T, H]
    pred = logits[0].argmax(-1)
    print("\na sequence step by step (state: first 4 of the normalized state's dims)")
    print(f"{'t':>3} {'token':>5} {'label':>5} {'pred':>4}  state")
    for t in range(batch.tokens.shape[1]):
        s = ", ".join(f"{float(v):+.2f}" for v in states[t, :4])
        print(f"{t + 1:>3} {int(batch.tokens[0, t]):>5} {int(batch.labels[0, t]):>5} {int(pred[t]):>4}  [{s}, ...]")
    norm500 = normalized_accuracy(acc[500], task.chance)
    print(f"\nchance-normalized accuracy at length 500: {norm500:.3f}")
