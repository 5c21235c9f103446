"""Recipe options, named recipes, state passing and the collapse objective (tiny runs, seconds)."""
import json

import pytest
import torch

from workbench.checkpoints import read_config
from workbench.constructions import construct
from workbench.objectives import collapse_ratio, labels_name_states, recipe_loss
from workbench.recipes import DEFAULT_RECIPE, RECIPES, get_recipe, recipe_config
from workbench.streams import StreamCarrier, upper_length
from workbench.tasks import make_task
from workbench.training import TrainConfig, train
from _configs import tiny_config

OPTIONS = dict(label_smoothing=0.1, collapse_weight=0.5, collapse_target="states", length_curriculum=0.5,
               state_passing=0.9, state_passing_warmup=0.2, recipe="stream")


def _tiny(**kw):
    return tiny_config(**{"steps": 40, **kw})


def test_options_round_trip_through_config_and_checkpoint(tmp_path):
    cfg = _tiny(**OPTIONS)
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.fingerprint() == cfg.fingerprint()
    train(cfg, tmp_path / "run", progress=False)
    stored = read_config(tmp_path / "run")["training"]
    fp = stored.pop("fingerprint")
    loaded = TrainConfig.from_dict(stored)
    assert loaded == cfg and fp == cfg.fingerprint()
    assert stored["recipe"] == "stream" and stored["state_passing"] == 0.9


def test_neutral_options_keep_old_fingerprints_and_each_option_changes_it():
    old = _tiny().to_dict()
    for k in ("label_smoothing", "collapse_weight", "collapse_target", "collapse_form", "collapse_warmup",
              "length_curriculum",
              "state_passing", "state_passing_warmup", "recipe"):
        old.pop(k)
    base = TrainConfig.from_dict(old)
    assert base.fingerprint() == _tiny().fingerprint()
    assert _tiny(recipe="paper").fingerprint() == base.fingerprint()          # a label only
    assert _tiny(state_passing_warmup=0.5).fingerprint() == base.fingerprint()  # off without passing
    assert _tiny(collapse_target="states").fingerprint() == base.fingerprint()  # off without weight
    assert _tiny(collapse_form="gap", collapse_warmup=0.3).fingerprint() == base.fingerprint()
    fps = {_tiny(**{k: v}).fingerprint() for k, v in
           [("label_smoothing", 0.1), ("collapse_weight", 1.0), ("length_curriculum", 0.5), ("state_passing", 0.5)]}
    assert len(fps) == 4 and base.fingerprint() not in fps


@pytest.mark.parametrize("kw, msg", [
    (dict(label_smoothing=1.0), "label_smoothing"), (dict(collapse_weight=-1), "collapse_weight"),
    (dict(length_curriculum=2), "length_curriculum"), (dict(state_passing=1.5), "state_passing"),
    (dict(collapse_target="nope"), "collapse_target"), (dict(collapse_form="x"), "collapse_form"),
    (dict(collapse_warmup=1.0), "collapse_warmup"),
    (dict(state_passing=0.5, variant="lstm"), "one-layer bilinear"),
])
def test_bad_options_name_the_field(kw, msg):
    with pytest.raises(ValueError, match=msg):
        _tiny(**kw)


def test_length_curriculum_grows_the_upper_length_within_the_train_range():
    cfg = _tiny(steps=100, length_curriculum=0.5, train_lengths=(2, 10))
    assert [upper_length(s, cfg) for s in (0, 25, 50, 99)] == [2, 6, 10, 10]
    assert upper_length(0, _tiny(train_lengths=(2, 10))) == 10


def test_state_passing_continues_the_streams_exactly():
    """Carried rows must equal one long sequence run from h0: the same logits (an exact cyclic:3
    model, normalised) and the same labels as the concatenated tokens."""
    task = make_task("cyclic:3")
    model = construct(task, "full")
    model.eval()
    cfg = _tiny(state_passing=0.75, state_passing_warmup=0.0, collapse_weight=0.0)
    carrier = StreamCarrier(task, cfg)
    gen = torch.Generator().manual_seed(0)
    tokens, got_logits, got_labels, carried_flags = [], [], [], []
    for step in range(4):
        batch, h_start, carried = carrier.next_batch(step, gen)
        with torch.no_grad():
            _, logits, final = recipe_loss(model, batch, cfg, task, h_start, carried, want_final=True)
        carrier.update(batch, final)
        tokens.append(batch.tokens)
        got_logits.append(logits)
        got_labels.append(batch.labels)
        carried_flags.append(carried)
    assert carried_flags[0] is None and all(c is not None for c in carried_flags[1:])
    n = carrier.n_carry
    assert n == 12 and bool(carried_flags[1][:n].all()) and not bool(carried_flags[1][n:].any())
    long_tokens = torch.cat([t[:n] for t in tokens], dim=1)
    ref = task.label(long_tokens)
    with torch.no_grad():
        ref_logits = model(long_tokens)
    assert torch.equal(torch.cat([lab[:n] for lab in got_labels], 1), ref.labels)
    probs = torch.cat([lg[:n] for lg in got_logits], 1).softmax(-1)
    assert torch.allclose(probs, ref_logits.softmax(-1), atol=1e-5)
    # the fresh rows restart from h0 and the automaton's start state
    fresh = task.label(tokens[3][n:])
    assert torch.equal(got_labels[3][n:], fresh.labels)


def test_a_stream_whose_prediction_was_wrong_restarts_from_h0():
    """A group's error never heals, so a carried row whose last prediction was wrong must start
    again from h0 and the automaton's start state; the rows that were right stay carried."""
    task = make_task("cyclic:3")
    cfg = _tiny(state_passing=0.75, state_passing_warmup=0.0, collapse_weight=0.0)
    carrier = StreamCarrier(task, cfg)
    gen = torch.Generator().manual_seed(0)
    batch, _, _ = carrier.next_batch(0, gen)
    logits = torch.nn.functional.one_hot(batch.labels, 3).float()     # right everywhere ...
    logits[0, -1] = torch.nn.functional.one_hot((batch.labels[0, -1] + 1) % 3, 3).float()  # ... but row 0
    carrier.update(batch, torch.randn(cfg.batch_size, 4), logits)
    nxt, _, carried = carrier.next_batch(1, gen)
    n = carrier.n_carry
    assert not bool(carried[0]) and bool(carried[1:n].all()) and not bool(carried[n:].any())
    assert torch.equal(nxt.labels[0], task.label(nxt.tokens[:1]).labels[0])          # fresh start
    q = batch.states[1, -1].item()
    assert nxt.states[1, 0].item() == int(task.automaton.transitions[q, nxt.tokens[1, 0]])


def test_state_passing_carry_is_saved_with_the_training_state(tmp_path):
    cfg = _tiny(steps=60, state_passing=0.5, state_passing_warmup=0.1)
    ref = train(cfg, tmp_path / "ref", progress=False)

    class Stop(Exception):
        pass

    def interrupt(model):
        calls = {"n": 0}
        orig = model.forward

        def fwd(*a, **k):
            calls["n"] += 1
            if model.training and calls["n"] == 45:
                raise Stop
            return orig(*a, **k)
        model.forward = fwd

    with pytest.raises(Stop):
        train(cfg, tmp_path / "int", progress=False, init_fn=interrupt)
    res = train(cfg, tmp_path / "int", progress=False)
    assert res.resumed
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k]), k


def test_collapse_ratio_is_zero_for_points_and_large_for_unrelated_groups():
    g = torch.arange(4).repeat(8).reshape(4, 8)
    centres = torch.randn(4, 5)
    points = centres[g] * torch.rand(4, 8, 1).add(0.5)          # any positive scale per state
    assert float(collapse_ratio(points, g)) < 1e-10
    noise = torch.randn(4, 8, 5, requires_grad=True)
    r = collapse_ratio(noise, g)
    assert 0.5 < float(r) <= 1.0
    r.backward()
    assert noise.grad.abs().sum() > 0


def test_gap_form_penalises_merged_groups_where_the_ratio_does_not():
    from workbench.objectives import collapse_gap_ratio

    g = torch.arange(4).repeat(8).reshape(4, 8)
    centres = torch.randn(4, 5)
    assert float(collapse_gap_ratio(centres[g], g)) < 1e-3
    merged = centres.clone()
    merged[1] = merged[0]                      # two elements on one point: a quotient solution
    assert float(collapse_ratio(merged[g], g)) < 1e-10          # the ratio calls it perfect
    assert abs(float(collapse_gap_ratio(merged[g], g)) - 0.5) < 1e-3   # the gap form does not
    x = torch.randn(4, 8, 5, requires_grad=True)
    collapse_gap_ratio(x, g).backward()
    assert x.grad.abs().sum() > 0


def test_collapse_warmup_ramps_the_weight():
    from workbench.objectives import collapse_weight_at

    cfg = _tiny(steps=100, collapse_weight=2.0, collapse_warmup=0.5)
    assert [collapse_weight_at(s, cfg) for s in (0, 25, 50, 90)] == [0.0, 1.0, 2.0, 2.0]
    assert collapse_weight_at(0, _tiny(collapse_weight=2.0)) == 2.0


def test_labels_name_states_rule():
    assert labels_name_states(make_task("fsm:5")) and labels_name_states(make_task("group:S3"))
    assert not labels_name_states(make_task("modarith:5"))
    assert get_recipe("collapse").fields_for(make_task("modarith:5")) == {
        "train_lengths": (2, 10), "collapse_weight": 1.0, "collapse_target": "states"}
    assert get_recipe("collapse").fields_for(make_task("fsm:25"))["collapse_target"] == "labels"


def test_collapse_objective_helps_a_short_fsm_run():
    """300 steps on fsm:5: the collapse objective generalises where plain cross-entropy drifts."""
    kw = dict(task="fsm:5", steps=300, eval_every=100, early_stop=False, eval_lengths=(200,),
              eval_sequences=256)
    plain = train(TrainConfig(**kw), None, progress=False).accuracy[200]
    collapsed = train(TrainConfig(collapse_weight=1.0, **kw), None, progress=False).accuracy[200]
    assert collapsed > plain + 0.1, (plain, collapsed)


def test_recipes_are_named_and_paper_protocol_is_enforced():
    assert {"paper", "collapse", "stream"} <= set(RECIPES) and DEFAULT_RECIPE in RECIPES
    cfg = recipe_config("collapse", "fsm:5", steps=10)
    assert cfg.recipe == "collapse" and cfg.collapse_weight == 1.0 and cfg.train_lengths == (2, 10)
    with pytest.raises(ValueError, match="paper's protocol"):
        recipe_config("paper", "fsm:5", state_passing=0.5)
    with pytest.raises(ValueError, match="paper's protocol"):
        recipe_config("collapse", "fsm:5", train_lengths=(2, 20))
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("magic")
    assert recipe_config("stream", "cyclic:5").state_passing == 0.98


# ---- experiments as data -------------------------------------------------------------------

def _grid(tmp_path, seeds=(0,)):
    from workbench.experiments import parse_grid

    spec = {"name": "tiny", "description": "test grid",
            "grid": [{"recipe": ["paper", "collapse"], "task": ["cyclic:2"], "variant": ["full"],
                      "seed": list(seeds), "steps": [30], "d_hidden": [4], "eval_every": [15],
                      "val_sequences": [16], "long_val_sequences": [16], "long_val_length": [40],
                      "eval_lengths": [[10, 50, 500]], "eval_sequences": [32]}],
            "long_lengths": [1000], "long_sequences": 8}
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(spec))
    return parse_grid(spec, source=str(path))


def test_grid_runs_resume_and_write_the_results_table(tmp_path, capsys):
    from workbench.experiments import collect, grid_runs, run_grid
    from workbench.zoo import run_dir

    grid = _grid(tmp_path, seeds=(0, 1))
    runs = grid_runs(grid)
    assert len(runs) == 4 and len({r.name for r in runs}) == 4
    assert runs[0].name.startswith("cyclic2_full_paper_d_hidden4_") and runs[0].name.endswith("_s0")
    assert {r.train_config().recipe for r in runs} == {"paper", "collapse"}
    assert all(row["status"] == "not finished" for row in collect(grid, tmp_path / "runs"))
    # train only the first two points (as if the grid was interrupted), then the whole grid
    from workbench import zoo
    zoo.build(root=tmp_path / "runs" / "tiny", jobs=1, progress=False, plan=runs[:2])
    stamp = {r.name: (run_dir(r, tmp_path / "runs" / "tiny") / "model.safetensors").stat().st_mtime_ns
             for r in runs[:2]}
    capsys.readouterr()
    assert run_grid(grid, runs=tmp_path / "runs", out=tmp_path / "out", progress=False, command="CMD") == 0
    out = capsys.readouterr().out
    assert "2 finished, 2 to train" in out
    for r in runs[:2]:   # finished runs were skipped, not retrained
        assert (run_dir(r, tmp_path / "runs" / "tiny") / "model.safetensors").stat().st_mtime_ns == stamp[r.name]
    rows = collect(grid, tmp_path / "runs")
    assert len(rows) == 4 and all(row["status"] == "finished" for row in rows)
    assert all(0 <= row["acc_1000"] <= 1 for row in rows)
    csv_text = (tmp_path / "out" / "results.csv").read_text()
    md = (tmp_path / "out" / "results.md").read_text()
    assert csv_text.startswith("# made by: CMD\n") and csv_text.count("\n") == 6
    assert "Made by `CMD`" in md and "| collapse | cyclic:2 | full |" in md
    assert json.loads((tmp_path / "out" / "grid.json").read_text())["name"] == "tiny"


def test_grid_file_errors_name_the_bad_value(tmp_path):
    from workbench.experiments import load_grid, parse_grid

    with pytest.raises(ValueError, match="unknown recipe 'magic'"):
        parse_grid({"name": "x", "grid": [{"task": ["parity"], "recipe": ["magic"]}]})
    with pytest.raises(ValueError, match="unknown keys \\['stepz'\\]"):
        parse_grid({"name": "x", "grid": [{"task": ["parity"], "stepz": [3]}]})
    with pytest.raises(ValueError, match="unknown variant key 'fulll'"):
        parse_grid({"name": "x", "grid": [{"task": ["parity"], "variant": ["fulll"]}]})
    with pytest.raises(ValueError, match="folder name"):
        parse_grid({"name": "a/b", "grid": [{"task": ["parity"]}]})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_grid(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="paper's protocol"):
        from workbench.experiments import grid_runs
        grid_runs(parse_grid({"name": "x", "grid": [{"task": ["parity"], "state_passing": [0.5]}]}))


# ---- CLI -----------------------------------------------------------------------------------

def _cli(*args):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)


@pytest.mark.parametrize("args, msg", [
    (["train", "--task", "parity", "--state-passing", "2"], "state passing must be a number in [0, 1]"),
    (["train", "--task", "parity", "--label-smoothing", "x"], "label smoothing must be a number"),
    (["train", "--task", "parity", "--recipe", "magic"], "unknown recipe 'magic'"),
    (["experiment", "run", "/nonexistent/grid.json"], "cannot read grid file"),
    (["train", "--task", "parity", "--anchor-steps", "-3"], "anchor steps must be an integer >= 0"),
    (["train", "--task", "modarith:3", "--anchor-steps", "5", "--steps", "5", "--hidden", "4"],
     "anchor phase is not supported on 'modarith:3'"),
])
def test_cli_bad_recipe_input_exits_2_with_one_line(args, msg):
    r = _cli(*args)
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_lists_recipes_and_train_records_the_recipe(tmp_path):
    r = _cli("experiment", "recipes")
    assert r.returncode == 0 and "collapse" in r.stdout and "(default)" in r.stdout
    out = tmp_path / "run"
    from workbench.cli import main

    common = ["train", "--task", "cyclic:2", "--hidden", "4", "--steps", "20", "--no-progress",
              "--eval-lengths", "10"]
    assert main([*common, "--out", str(out)]) == 0
    conf = read_config(out)["training"]
    assert conf["recipe"] == DEFAULT_RECIPE and conf["collapse_weight"] == 1.0
    assert main([*common, "--label-smoothing", "0.1", "--out", str(tmp_path / "custom")]) == 0
    conf = read_config(tmp_path / "custom")["training"]
    assert conf["recipe"] == f"{DEFAULT_RECIPE}+custom" and conf["label_smoothing"] == 0.1
    assert main([*common, "--anchor-steps", "5", "--anchor-length", "12", "--out", str(tmp_path / "anchored")]) == 0
    m = json.loads((tmp_path / "anchored" / "metrics.json").read_text())
    conf = read_config(tmp_path / "anchored")["training"]
    assert (conf["anchor_steps"], conf["anchor_length"], m["anchor"]["length"]) == (5, 12, 12)


def test_zoo_cells_name_their_recipe():
    from workbench import zoo

    plan = {r.name: r for r in zoo.zoo_plan()}
    c = plan["fsm25_full_s0"].train_config()
    assert c.recipe == "collapse" and c.collapse_weight == 1.0 and c.train_lengths == (2, 10)
    assert plan["modarith5_full_s1"].train_config().collapse_target == "states"
    g = plan["cyclic50_cp_s0"].train_config()
    assert g.recipe == "collapse_gap" and g.collapse_form == "gap" and g.train_lengths == (2, 10)
    p = plan["cyclic5_full_s0"].train_config()
    assert p.recipe == "paper" and p.collapse_weight == 0.0
    # naming a cell `paper` leaves its fingerprint as it was before recipes existed
    bare = zoo.Run("x", "cyclic:5", "full", 0).train_config()
    assert p.fingerprint() == bare.fingerprint()


def test_read_table_types_the_shipped_results_and_feeds_summary_cells():
    from workbench.checkpoints import zoo_root
    from workbench.experiments import read_table, summary_cells

    rows = read_table(zoo_root() / "experiments" / "collapse_gap_targets" / "results.csv")
    assert rows and all(isinstance(r["seed"], int) for r in rows)
    assert all(r["acc_500"] is None or 0.0 <= r["acc_500"] <= 1.0 for r in rows)
    assert all(isinstance(r["solved_validation"], bool) for r in rows if r["solved_validation"] is not None)
    cells = summary_cells(rows)
    fsm25 = next(c for c in cells if c["task"] == "fsm:25")
    assert fsm25["finished"] == 3 and fsm25["worst"] <= fsm25["median"] <= fsm25["best"]


def test_extended_table_cells_names_and_build_order():
    from workbench import zoo

    cells = zoo.extended_cells()
    assert len(cells) == 6 * 5 + 6 * 2 and ("group:S3", "full") in cells and ("group:S3", "rotation") not in cells
    plan = zoo.zoo_plan()
    ext = [r for r in plan if zoo.is_extended(r)]
    assert len(ext) == 3 * len(cells)
    by_name = {r.name: r for r in plan}
    parent = by_name["groupD4_full_horizon_s1"]
    c = parent.train_config()
    assert (c.recipe, c.long_val_length, c.long_val_sequences, c.collapse_form) == ("horizon", 10_000, 64, "gap")
    assert c.steps == int(1.5 * zoo.step_cap("group:D4"))
    # each extended run starts from its parent's checkpoint, bound to the parent's fingerprint,
    # and keeps the parent's training fields (its config says how its weights were made)
    a = by_name["groupD4_full_anchor_s1"].train_config()
    assert (a.recipe, a.init_from, a.init_fingerprint) == ("anchor", parent.name, c.fingerprint())
    assert a.anchor_steps > 0 and a.steps == c.steps and a.lr == c.lr and a.collapse_form == "gap"
    # the extended-protocol runs come after every paper-protocol run, `full` first, each
    # parent before the run that starts from it
    first_ext = min(i for i, r in enumerate(plan) if zoo.is_extended_protocol(r))
    assert all(zoo.is_extended_protocol(r) for r in plan[first_ext:]) and plan[first_ext].variant_key == "full"
    pos = {r.name: i for i, r in enumerate(plan)}
    assert all(pos[r.name] > pos[dict(r.options)["init_from"]] for r in ext)
    # adding them left every other run's fingerprint alone
    assert plan[0].train_config().recipe in ("paper", "collapse")


def test_extended_rows_stay_out_of_the_paper_tables_and_are_counted_at_10000(tmp_path):
    """A zoo with one paper-protocol and two extended runs: the reproduction table sees only the
    first, the extended section counts the two (one holds at 10,000, one does not) and leaves
    out the parent run the first started from."""
    from analyses.reporting.docs_pages import results_page
    from analyses.reporting.report import extended_table_html
    from workbench import zoo
    from workbench.checkpoints import read_index, save_checkpoint
    from workbench.constructions import construct

    task = make_task("cyclic:5")
    model = construct(task, "full")
    plan = []
    for name, recipe, acc500, acc_long in (("cyclic5_full_s0", "paper", 1.0, None),
                                           ("cyclic5_full_horizon_s0", "horizon", 1.0, 0.5),
                                           ("cyclic5_full_anchor_s0", "anchor", 1.0, 1.0),
                                           ("cyclic5_full_anchor_s1", "anchor", 1.0, 0.25)):
        metrics = {"accuracy": {"10": 1.0, "50": 1.0, "500": acc500},
                   "normalized_accuracy": {"10": 1.0, "50": 1.0, "500": acc500}, "steps": 1, "train_time_s": 0.0}
        if acc_long is not None:
            metrics["long_accuracy"] = {"10000": {"accuracy": acc_long, "n_sequences": 64, "seed": 0}}
        save_checkpoint(tmp_path / "zoo" / name, model, "cyclic:5", {"construction": "x", "recipe": recipe},
                        metrics, seed=0)
        plan.append(zoo.Run(name, "cyclic:5", "full", int(name[-1])))
    zoo.write_tables(tmp_path, plan=plan)
    rows = zoo.collect_rows(tmp_path, plan)
    assert [r["name"] for r in zoo.protocol_rows(rows)] == ["cyclic5_full_s0"]
    s = zoo.horizon_summary(rows)
    assert (s.held, s.total, s.failing) == (1, 2, ("cyclic5_full_anchor_s1",))
    assert "1 of 2" in s.sentence() and repr(s) == "HorizonSummary(1/2 hold at 10,000)"
    assert s.summary()["fraction"] == 0.5 and s.plot() is not None
    md = (tmp_path / "results.md").read_text()
    assert "1 of 2 extended-table models" in md
    assert "| cyclic:5 | full | 1.00 / 1.00 | 1.00 / 1.00 | 0.62 / 1.00 | 2 |" in md
    index = read_index(tmp_path)
    assert {m["recipe"] for m in index.values()} == {"paper", "horizon", "anchor"}
    assert {n: m["protocol"] for n, m in index.items()} == {
        "cyclic5_full_s0": "paper", "cyclic5_full_horizon_s0": "extended",
        "cyclic5_full_anchor_s0": "extended", "cyclic5_full_anchor_s1": "extended"}
    page = results_page(tmp_path)
    assert "Beyond the paper: length 10,000" in page and "`cyclic5_full_anchor_s1`" in page
    assert "0.62 / 1.00" in extended_table_html(rows)
