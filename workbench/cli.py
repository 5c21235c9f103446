"""``python -m workbench {train,eval,analyze,report,zoo,demo}``.

Only ``argparse`` is imported at module level so that ``--help`` is instant; each command
imports what it needs (``workbench.models`` pulls in TransformerLens, ~6 s). Every user error
(bad argument, bad checkpoint, bad task spec) ends with exit code 2 and one line on stderr, no
traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

from workbench.variants import VARIANTS


class _Parser(argparse.ArgumentParser):
    """argparse prints usage + message on two lines; the contract is one line."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 10,100,500, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers like 10,100,500, got {text!r}")
    return vals


def _number_list(what: str, example: str, accepts, accepted: str):
    """An argparse type for comma-separated floats that each satisfy ``accepts``."""
    def parse(text: str) -> list[float]:
        try:
            vals = [float(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers like {example}, got {text!r}") from None
        if not vals or not all(accepts(v) for v in vals):
            raise argparse.ArgumentTypeError(f"{what} must be in {accepted}, got {text!r}")
        return vals
    return parse


_float_list = _number_list("learning rates", "1e-2,3e-2", lambda v: 0 < v < 10, "(0, 10)")
_nonneg_float_list = _number_list("weight decays", "0,1", lambda v: 0 <= v < 100, "[0, 100)")


def _fraction(what: str, accepted: str, open_hi: bool = False):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number in {accepted}, got {text!r}") from None
        if not (0 <= v < 1 if open_hi else 0 <= v <= 1):
            raise argparse.ArgumentTypeError(f"{what} must be a number in {accepted}, got {text!r}")
        return v
    return parse


def _nonneg_float(what: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = -1.0
        if not 0 <= v < 100:
            raise argparse.ArgumentTypeError(f"{what} must be a number in [0, 100), got {text!r}")
        return v
    return parse


def _nonneg_int(what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = -1
        if v < 0:
            raise argparse.ArgumentTypeError(f"{what} must be an integer >= 0, got {text!r}")
        return v
    return parse


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63-1], got {text!r}") from None
    if not 0 <= v <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63-1], got {text!r}")
    return v


def _state_noise(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 100), got {text!r}") from None
    if not 0 <= v < 100:  # also false for nan
        raise argparse.ArgumentTypeError(f"expected a finite number in [0, 100), got {text!r}")
    return v


def _memory_budget(text: str) -> int:
    from workbench.limits import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _task_spec(text: str) -> str:
    """Parse-time task check: the spec exists and has something to learn."""
    from workbench.tasks import make_task
    from workbench.training import check_trainable

    try:
        check_trainable(make_task(text))
    except ValueError as e:
        first = str(e).splitlines()[0]
        raise argparse.ArgumentTypeError(f"{first} (accepted specs: `python -m workbench train --help`)") from None
    return text


def _out_folder(text: str) -> str:
    from pathlib import Path

    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; accepted: a folder (new, or one written "
                                         "by a previous run of the same command)")
    return text


def _length_range(text: str):
    from workbench.training import parse_lengths  # noqa: F401  (torch: only when used)
    try:
        return parse_lengths(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _device(text: str) -> str:
    from workbench.devices import check_device_spec  # no torch import: --help stays instant
    try:
        return check_device_spec(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_DEVICE_HELP = "cpu, cuda, cuda:N or auto (CUDA when present; default %(default)s)"
#: Python field names (in ValueErrors from the library) -> the option that sets them.
OPTION_OF_FIELD = {
    "d_hidden": "--hidden", "rank": "--rank", "block_size": "--block-size", "n_layers": "--layers",
    "steps": "--steps", "batch_size": "--batch", "seed": "--seed", "train_lengths": "--train-lengths",
    "eval_lengths": "--eval-lengths", "state_noise": "--state-noise", "lengths": "--lengths",
    "n_sequences": "--n", "lr": "--lr", "weight_decay": "--weight-decay", "out": "--out",
}


def _common_options() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("--debug", action="store_true",
                   help="show the full traceback of an unexpected error")
    c.add_argument("--memory-budget", type=_memory_budget, default=None, metavar="BYTES",
                   help="largest allocation a size may imply, e.g. 16GiB (default: "
                   "$WORKBENCH_MEMORY_BUDGET or 4GiB)")
    return c


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m workbench",
                description="Bilinear-RNN interpretability workbench: train, evaluate, analyse.")
    common = [_common_options()]
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", parents=common, help="train a model and write a checkpoint folder",
                       description="Train with the default recipe (Adam, cosine decay, final-step "
                       "loss, normalized states, early stop when every step up to length 50 and then 1,000 is solved).")
    t.add_argument("--task", required=True, type=_task_spec,
                   help="task spec, e.g. cyclic:5, fsm:10, group:S3/gens")
    t.add_argument("--variant", default="full", choices=VARIANTS)
    t.add_argument("--hidden", type=_positive_int, default=None, help="hidden size (default: rule from #states)")
    t.add_argument("--rank", type=_positive_int, default=None, help="cp rank (default 2*hidden)")
    t.add_argument("--block-size", type=_positive_int, default=None, help="block variant: block size")
    t.add_argument("--layers", type=_positive_int, default=1, help="layers (positive_diag, baselines)")
    t.add_argument("--additive", action="store_true", help="add B x_t + b (the affine ablation)")
    t.add_argument("--freeze-transition", action="store_true", help="frozen random transitions")
    t.add_argument("--steps", type=_positive_int, default=10_000, help="step cap (default 10000)")
    t.add_argument("--lr", type=_float_list, default=None,
                   help="learning rate(s): 1e-2 (default) or a grid 1e-2,3e-2 tried in order")
    t.add_argument("--weight-decay", type=_nonneg_float_list, default=None,
                   help="AdamW weight decay: one value, or one per learning rate (default 0)")
    t.add_argument("--state-noise", type=_state_noise, default=0.0,
                   help="relative Gaussian noise added to every state in training (default 0)")
    t.add_argument("--batch", type=_positive_int, default=64)
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--train-lengths", type=_length_range, default=None, help="LO-HI (default 2-10, or the preset's)")
    t.add_argument("--loss", choices=("final", "per_step"), default="final",
                   help="final: last step only (default; per_step fitted length 50 but not 500)")
    t.add_argument("--recipe", default=None,
                   help="named recipe (workbench.recipes; default: the default recipe, see "
                        "docs/recipes.md); the flags below override its fields")
    t.add_argument("--label-smoothing", type=_fraction("label smoothing", "[0, 1)", open_hi=True), default=None,
                   help="cross-entropy label smoothing (default 0)")
    t.add_argument("--collapse-weight", type=_nonneg_float("collapse weight"), default=None,
                   help="weight of the state-collapse objective (needs labels that name the states)")
    t.add_argument("--length-curriculum", type=_fraction("length curriculum", "[0, 1]"), default=None,
                   help="fraction of the steps over which the upper train length grows (0 = off)")
    t.add_argument("--state-passing", type=_fraction("state passing", "[0, 1]"), default=None,
                   help="fraction of streams carried across batches (0 = off; leaves the paper protocol)")
    t.add_argument("--state-passing-warmup", type=_fraction("state passing warm-up", "[0, 1)", open_hi=True),
                   default=None, help="fraction of the steps trained from h0 before carrying (default 0.3)")
    t.add_argument("--anchor-steps", type=_nonneg_int("anchor steps"), default=None,
                   help="steps of the anchor phase after training (0 = off; leaves the paper protocol)")
    t.add_argument("--anchor-length", type=_positive_int, default=None,
                   help="rollout length of the anchor phase (default 100)")
    t.add_argument("--no-normalize-train", action="store_true",
                   help="train without per-step normalisation (evaluation still normalises)")
    t.add_argument("--preset", choices=("paper", "deletang"), default="paper")
    t.add_argument("--eval-lengths", type=_int_list, default=[10, 50, 500])
    t.add_argument("--no-early-stop", action="store_true")
    t.add_argument("--out", type=_out_folder, default=None,
                   help="checkpoint folder (default runs/TASK-VARIANT-sSEED)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a finished checkpoint of another task or variant in --out")
    t.add_argument("--threads", type=_positive_int, default=1)
    t.add_argument("--device", type=_device, default="auto", help=_DEVICE_HELP)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", parents=common, help="accuracy per length, raw and chance-normalized")
    e.add_argument("checkpoint", help="checkpoint folder or zoo name")
    e.add_argument("--lengths", type=_int_list, default=None, help="e.g. 10,100,500 (default: the preset's)")
    e.add_argument("--preset", choices=("paper", "deletang"), default=None,
                   help="paper: length 500; deletang: mean over lengths 41-500")
    e.add_argument("--stride", type=_positive_int, default=1, help="deletang: every k-th length only")
    e.add_argument("--n", type=_positive_int, default=512, help="sequences per length")
    e.add_argument("--seed", type=_seed, default=0)
    e.add_argument("--json", action="store_true")
    e.add_argument("--device", type=_device, default="auto", help=_DEVICE_HELP)
    e.add_argument("--trust-unhashed", action="store_true",
                   help="accept a hand-made checkpoint without weights/config hashes")
    e.set_defaults(func=cmd_eval)

    a = sub.add_parser("analyze", parents=common, help="analyses of one model as JSON")
    a.add_argument("checkpoint")
    a.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    a.add_argument("--device", type=_device, default="cpu",
                   help="where the model's forward passes run: cpu (default: the analyses are "
                        "small numpy linear algebra), cuda, cuda:N or auto")
    a.add_argument("--lengths", type=_int_list, default=[10, 100, 500],
                   help="lengths at which accuracy is measured (default 10,100,500)")
    a.add_argument("--n", type=_positive_int, default=256, help="sequences per length (default 256)")
    a.add_argument("--trust-unhashed", action="store_true",
                   help="accept a hand-made checkpoint without weights/config hashes")
    a.set_defaults(func=cmd_analyze)

    r = sub.add_parser("report", parents=common, help="build the HTML report from the shipped zoo")
    r.add_argument("--out", default="reports/")
    r.set_defaults(func=cmd_report)

    z = sub.add_parser("zoo", help="build or list the model zoo")
    zsub = z.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", parser_class=_Parser)
    zsub.required = True
    zb = zsub.add_parser("build", parents=common, help="train every run of the plan not yet finished, then write tables")
    zb.add_argument("--jobs", type=_positive_int, default=2, help="parallel processes (one thread each)")
    zb.add_argument("--only", default=None, help="glob over run names, e.g. 'cyclic5_*' (comma-separated)")
    zb.add_argument("--root", default=None, help="zoo folder (default checkpoints/)")
    zb.add_argument("--dry-run", action="store_true", help="list the runs that would train")
    zb.add_argument("--no-progress", action="store_true")
    zb.add_argument("--device", type=_device, default="auto", help=_DEVICE_HELP)
    zb.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="local: a process pool on this machine (default); ray: Ray tasks, one "
                         "thread each (on a cluster with --address, else a Ray started for the build)")
    zb.add_argument("--address", default=None,
                    help="Ray cluster address (e.g. 10.0.0.1:6379 or auto); only with --backend ray")
    zb.set_defaults(func=cmd_zoo_build)
    zl = zsub.add_parser("list", parents=common, help="list the runs of the plan and their status")
    zl.add_argument("--root", default=None)
    zl.add_argument("--only", default=None)
    zl.set_defaults(func=cmd_zoo_list)
    zt = zsub.add_parser("tables", parents=common, help="rewrite results.csv/results.md/index.json from finished runs")
    zt.add_argument("--root", default=None)
    zt.set_defaults(func=cmd_zoo_tables)

    x = sub.add_parser("experiment", parents=common, help="run a declarative grid of training runs and write its table")
    xsub = x.add_subparsers(dest="experiment_command", metavar="EXPERIMENT_COMMAND", parser_class=_Parser)
    xsub.required = True
    xr = xsub.add_parser("run", help="train the unfinished runs of GRID.json, then write its tables")
    xr.add_argument("grid", help="grid file (JSON; see workbench/experiments.py)")
    xr.add_argument("--jobs", type=_positive_int, default=1, help="parallel processes (one thread each)")
    xr.add_argument("--runs", default=None, help="run folders root (default runs/experiments, ignored by git)")
    xr.add_argument("--out", default=None, help="tables folder (default checkpoints/experiments/NAME)")
    xr.add_argument("--no-progress", action="store_true")
    xr.set_defaults(func=cmd_experiment_run)
    xl = xsub.add_parser("list", help="list the runs of GRID.json and their status")
    xl.add_argument("grid")
    xl.add_argument("--runs", default=None)
    xl.set_defaults(func=cmd_experiment_list)
    xt = xsub.add_parser("table", help="rewrite the tables of GRID.json from the finished runs")
    xt.add_argument("grid")
    xt.add_argument("--runs", default=None)
    xt.add_argument("--out", default=None)
    xt.set_defaults(func=cmd_experiment_table)
    xs = xsub.add_parser("rescore", help="re-evaluate checkpoints on another test seed and write a table")
    xs.add_argument("checkpoints", nargs="+", help="zoo names or checkpoint folders")
    xs.add_argument("--lengths", type=_int_list, default=[500])
    xs.add_argument("--n", type=_positive_int, default=256, help="sequences per length")
    xs.add_argument("--seed", type=_seed, default=12345)
    xs.add_argument("--out", default=None, help="tables folder (default: print only)")
    xs.set_defaults(func=cmd_experiment_rescore)
    xp = xsub.add_parser("recipes", help="list the named recipes")
    xp.set_defaults(func=cmd_experiment_recipes)

    d = sub.add_parser("demo", parents=common, help="train a tiny model on cyclic:5 and show what its states do")
    d.add_argument("--seed", type=_seed, default=0)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from workbench.training import TrainConfig, get_preset, train

    preset = get_preset(args.preset)
    optimiser = {}
    if args.lr is not None:
        optimiser["lr"] = tuple(args.lr)
    if args.weight_decay is not None:
        optimiser["weight_decay"] = tuple(args.weight_decay)
    import dataclasses

    from workbench.recipes import DEFAULT_RECIPE, get_recipe
    from workbench.tasks import make_task

    recipe = get_recipe(args.recipe or DEFAULT_RECIPE)
    own = recipe.fields_for(make_task(args.task))
    fields = dict(own)
    options = {"label_smoothing": args.label_smoothing, "collapse_weight": args.collapse_weight,
               "length_curriculum": args.length_curriculum, "state_passing": args.state_passing,
               "state_passing_warmup": args.state_passing_warmup,
               "anchor_steps": args.anchor_steps, "anchor_length": args.anchor_length,
               "normalize_train": False if args.no_normalize_train else None,
               "train_lengths": args.train_lengths}
    fields.update({k: v for k, v in options.items() if v is not None})
    fields.setdefault("train_lengths", preset.train_lengths)
    # A flag that changes a recipe option makes the run a variation of the recipe: say so.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    changed = any(fields[k] != own.get(k, defaults[k]) for k in fields if k != "train_lengths") \
        or tuple(fields["train_lengths"]) != tuple(own.get("train_lengths", defaults["train_lengths"]))
    name = f"{recipe.name}+custom" if changed else recipe.name
    cfg = TrainConfig(
        task=args.task, variant=args.variant, d_hidden=args.hidden, rank=args.rank,
        block_size=args.block_size if args.variant == "block" else None, n_layers=args.layers,
        additive=args.additive, freeze_transition=args.freeze_transition, steps=args.steps,
        **optimiser, state_noise=args.state_noise, batch_size=args.batch, seed=args.seed,
        loss=args.loss, eval_lengths=tuple(args.eval_lengths), early_stop=not args.no_early_stop,
        device=args.device, recipe=name, **fields)
    out = args.out or f"runs/{args.task.replace(':', '').replace('/', '_')}-{args.variant}-s{args.seed}"
    res = train(cfg, out, progress=not args.no_progress, threads=args.threads, overwrite=args.overwrite)
    state = "reused finished checkpoint" if res.reused else ("resumed" if res.resumed else "trained")
    print(f"{state}: {out}  lr={res.lr:g} steps={res.steps} time={res.train_time_s:.1f}s "
          f"solved(validation)={res.solved}")
    _print_table(res.accuracy, res.normalized_accuracy)
    return 0


def _print_table(acc: dict, norm: dict, title: str | None = None) -> None:
    if title:
        print(title)
    print(f"{'length':>8}  {'accuracy':>9}  {'normalized':>10}")
    for L in acc:
        print(f"{L:>8}  {acc[L]:>9.4f}  {norm[L]:>10.4f}")


def cmd_eval(args) -> int:
    from workbench.checkpoints import load_checkpoint
    from workbench.training import evaluate, evaluate_preset, normalized_accuracy

    from workbench.devices import resolve_device

    device = resolve_device(args.device)
    model, task = load_checkpoint(args.checkpoint, trust_unhashed=args.trust_unhashed)
    model.to(device)
    if args.preset and args.lengths:
        raise ValueError("give either --lengths or --preset, not both")
    if args.preset:
        sc = evaluate_preset(model, task, args.preset, stride=args.stride, n_sequences=args.n, seed=args.seed)
        if args.json:
            print(strict_json({"task": task.spec, "preset": sc.preset, "stride": sc.stride,
                               "score": sc.score, "normalized_score": sc.normalized_score,
                               "accuracy": {str(k): v for k, v in sc.accuracy.items()}}))
            return 0
        if args.preset == "paper":
            _print_table(sc.accuracy, sc.normalized, f"{task.spec}  preset=paper (length 500)")
        else:
            print(f"{task.spec}  preset=deletang  lengths 41-500 stride {sc.stride} "
                  f"({sc.lengths_evaluated} lengths x {args.n} sequences)")
        print(f"score {sc.score:.4f}  normalized {sc.normalized_score:.4f}")
        return 0
    lengths = args.lengths or [10, 100, 500]
    acc = evaluate(model, task, lengths, args.n, args.seed)
    norm = {L: normalized_accuracy(a, task.chance) for L, a in acc.items()}
    if args.json:
        print(strict_json({"task": task.spec, "chance": task.chance,
                           "accuracy": {str(k): v for k, v in acc.items()},
                           "normalized_accuracy": {str(k): v for k, v in norm.items()}}))
    else:
        _print_table(acc, norm, f"{task.spec}  variant={model.cfg.variant}  chance={task.chance:.4f}")
    return 0


def _optional_module(name: str, what: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            raise _UserError(f"{what} is not available ({name} is missing from this installation)") from e
        raise


class _UserError(Exception):
    pass


def cmd_analyze(args) -> int:
    mod = _optional_module("analyses.reporting.summary", "analyze")
    fn = getattr(mod, "analyze_checkpoint", None)
    if fn is None:
        raise _UserError("analyze is not available (analyses.reporting.summary has no analyze_checkpoint)")
    from workbench.checkpoints import resolve_checkpoint, read_config
    from workbench.devices import resolve_device

    device = resolve_device(args.device)
    folder = resolve_checkpoint(args.checkpoint)
    read_config(folder)  # fail fast with the checkpoint's own message
    result = fn(str(folder), lengths=args.lengths, n_sequences=args.n,
                trust_unhashed=args.trust_unhashed, device=device)
    print(strict_json(result, indent=2))
    return 0


def _json_ready(o):
    """Numpy/torch scalars and arrays as Python values; NaN and +-inf as None (JSON null)."""
    if isinstance(o, dict):
        return {str(k): _json_ready(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_ready(v) for v in o]
    if hasattr(o, "tolist") and not isinstance(o, (str, bytes)):
        return _json_ready(o.tolist())
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        return _json_ready(o.item())
    if isinstance(o, float) and o != o or o in (float("inf"), float("-inf")):
        return None
    if isinstance(o, (str, int, float, bool)) or o is None:
        return o
    return str(o)


def strict_json(obj, indent: int | None = None) -> str:
    """Strict JSON (RFC 8259): non-finite floats become null, so every parser accepts it."""
    return json.dumps(_json_ready(obj), indent=indent, allow_nan=False)


def cmd_report(args) -> int:
    mod = _optional_module("analyses.reporting.report", "report")
    fn = getattr(mod, "build_report", None)
    if fn is None:
        raise _UserError("report is not available (analyses.reporting.report has no build_report)")
    out = fn(args.out)
    print(f"report written to {out or args.out}")
    return 0


def cmd_zoo_build(args) -> int:
    from workbench import zoo

    if args.address is not None and args.backend != "ray":
        raise ValueError(f"--address {args.address!r} needs --backend ray")
    return zoo.build(root=args.root, jobs=args.jobs, only=args.only, dry_run=args.dry_run,
                     progress=not args.no_progress, backend=args.backend, address=args.address,
                     device=args.device)


def cmd_zoo_list(args) -> int:
    from workbench import zoo

    zoo.print_list(root=args.root, only=args.only)
    return 0


def cmd_zoo_tables(args) -> int:
    from workbench import zoo

    n = zoo.rescore_step_accuracy(root=args.root)   # only runs scored before this existed
    if n:
        print(f"added the every-step score to {n} runs")
    paths = zoo.write_tables(root=args.root)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _experiment_command(args) -> str:
    parts = ["python -m workbench experiment run", args.grid]
    if getattr(args, "jobs", 1) != 1:
        parts.append(f"--jobs {args.jobs}")
    if args.runs:
        parts.append(f"--runs {args.runs}")
    return " ".join(parts)


def cmd_experiment_run(args) -> int:
    from workbench import experiments

    grid = experiments.load_grid(args.grid)
    return experiments.run_grid(grid, runs=args.runs, jobs=args.jobs, progress=not args.no_progress,
                                out=args.out, command=_experiment_command(args))


def cmd_experiment_list(args) -> int:
    from workbench import experiments

    experiments.print_list(experiments.load_grid(args.grid), runs=args.runs)
    return 0


def cmd_experiment_table(args) -> int:
    from workbench import experiments

    grid = experiments.load_grid(args.grid)
    args.jobs = 1
    experiments.fill_scores(grid, runs=args.runs)
    paths = experiments.write_results(grid, runs=args.runs, out=args.out, command=_experiment_command(args))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_experiment_rescore(args) -> int:
    from workbench import experiments

    cmd = (f"python -m workbench experiment rescore {' '.join(args.checkpoints)} --lengths "
           f"{','.join(map(str, args.lengths))} --n {args.n} --seed {args.seed}")
    experiments.rescore(args.checkpoints, tuple(args.lengths), args.n, args.seed, args.out, cmd, progress=True)
    return 0


def cmd_experiment_recipes(args) -> int:
    from workbench.recipes import DEFAULT_RECIPE, RECIPES

    for r in RECIPES.values():
        mark = " (default)" if r.name == DEFAULT_RECIPE else ""
        print(f"{r.name:<18} {r.protocol:<9} {r.description}{mark}")
    return 0


def cmd_demo(args) -> int:
    from workbench import zoo

    zoo.demo(seed=args.seed, progress=not args.no_progress)
    return 0


# ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code.

    0 success; 2 bad input (``ValueError``, which includes ``CheckpointError`` and the memory
    budget's ``LimitError``; argparse errors), one line on stderr naming the option, the value
    and what is accepted; 1 anything else, one line and a hint to rerun with ``--debug``, which
    shows the traceback; 130 interrupted.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a bad argument (2), already reported
        return e.code if isinstance(e.code, int) else 2
    debug = bool(getattr(args, "debug", False))
    try:
        import torch  # noqa: F401  (after parsing: --help never pays for it)

        from workbench.cpu_memory import retain_freed_memory
        from workbench.limits import memory_budget_set

        retain_freed_memory()
        torch.set_num_threads(getattr(args, "threads", 1) or 1)
        with memory_budget_set(getattr(args, "memory_budget", None)):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted (training state is saved every 500 steps; rerun to resume)\n")
        return 130
    except BrokenPipeError:
        return 0
    except (_UserError, ValueError) as e:
        if debug:
            raise
        sys.stderr.write(f"error: {_one_line(_user_message(e))}\n")
        return 2
    except Exception as e:  # noqa: BLE001  the top-level guard: one line, never a traceback
        if debug:
            raise
        sys.stderr.write(f"error: unexpected {type(e).__name__}: {_one_line(str(e))[:500]} "
                         "(rerun with --debug for the traceback)\n")
        return 1


def _user_message(e: Exception) -> str:
    """The error's message, with a library field name replaced by its command-line option."""
    from workbench.limits import LimitError

    if isinstance(e, LimitError):
        return e.render(OPTION_OF_FIELD.get(e.field, e.field))
    return str(e)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
