"""A user's automaton as a task: `automaton:PATH.json`, `Task.from_automaton`, checkpoints."""
import json

import numpy as np
import pytest
import torch

from workbench.tasks import Task, make_task

# A 3-state counter with reset: "inc" moves q -> q+1 mod 3, "reset" goes back to 0.
COUNTER = {"transitions": [[1, 0], [2, 0], [0, 0]], "start": 0, "outputs": [0, 1, 2],
           "token_names": ["inc", "reset"]}


def _write(tmp_path, record, name="a.json"):
    p = tmp_path / name
    p.write_text(record if isinstance(record, str) else json.dumps(record))
    return p


def test_make_task_reads_the_file_and_labels_by_the_table(tmp_path):
    p = _write(tmp_path, COUNTER)
    task = make_task(f"automaton:{p}")
    assert task.spec == f"automaton:{p}" and task.family == "automaton"
    assert (task.d_vocab, task.n_classes, task.token_names) == (2, 3, ["inc", "reset"])
    batch = task.label(torch.tensor([[0, 0, 0, 0, 1, 0]]))
    assert batch.labels.tolist() == [[1, 2, 0, 1, 0, 1]]
    assert task.automaton_record() == COUNTER


def test_from_automaton_equals_the_file_task_and_accepts_arrays():
    task = Task.from_automaton(np.array(COUNTER["transitions"]), 0, np.array([0, 1, 2]))
    assert task.spec == "automaton" and task.token_names == ["0", "1"]
    tok = torch.randint(0, 2, (4, 30), generator=torch.Generator().manual_seed(0))
    ref = Task.from_automaton(**COUNTER)
    assert torch.equal(task.label(tok).labels, ref.label(tok).labels)


def test_any_task_exports_a_record_that_reads_back(tmp_path):
    task = make_task("fsm:5:3@2")
    p = _write(tmp_path, task.automaton_record())
    again = make_task(f"automaton:{p}")
    tok = task.sample_tokens(8, 20, torch.Generator().manual_seed(0))
    assert torch.equal(task.label(tok).labels, again.label(tok).labels)


@pytest.mark.parametrize("record,needle", [
    ({**COUNTER, "transitions": [[1, 0], [2, 0], [3, 0]]},
     r"field 'transitions': transitions\[2\]\[0\] = 3 is not a state id in 0..2"),
    ({**COUNTER, "transitions": [[1, 0], [2], [0, 0]]}, r"row 1 has 1 entries but row 0 has 2"),
    ({**COUNTER, "transitions": [[1, 0.5], [2, 0], [0, 0]]}, r"transitions\[0\]\[1\] = 0.5 is not"),
    ({**COUNTER, "transitions": []}, "field 'transitions'"),
    ({**COUNTER, "start": 3}, r"field 'start': 3 is not a state id in 0..2"),
    ({**COUNTER, "start": True}, r"field 'start'"),
    ({**COUNTER, "outputs": [0, 1]}, r"field 'outputs': got 2, need a list of 3 labels"),
    ({**COUNTER, "outputs": [0, -1, 2]}, r"outputs\[1\] = -1 is not a non-negative"),
    ({**COUNTER, "token_names": ["a", "a"]}, r"field 'token_names': 'a' appears more than once"),
    ({**COUNTER, "token_names": ["a"]}, r"field 'token_names': got 1, need a list of 2"),
    ({k: v for k, v in COUNTER.items() if k != "outputs"}, r"field 'outputs': missing"),
    ({**COUNTER, "output": [0]}, r"unknown field\(s\) \['output'\]"),
    ([1, 2], "expected a JSON object"),
    ("{not json", r"invalid JSON .* line 1 column 2"),
])
def test_bad_automaton_files_name_the_field(tmp_path, record, needle):
    p = _write(tmp_path, record)
    with pytest.raises(ValueError, match=needle):
        make_task(f"automaton:{p}")


def test_missing_file_and_path(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        make_task(f"automaton:{tmp_path / 'nope.json'}")
    with pytest.raises(ValueError, match="missing path"):
        make_task("automaton:")
    with pytest.raises(ValueError, match="field 'start'"):
        Task.from_automaton([[0]], 1, [0])


def test_checkpoint_stores_the_automaton_and_loads_without_the_file(tmp_path):
    from workbench.checkpoints import load_checkpoint, read_config, save_checkpoint
    from workbench.models import ModelConfig, build_model

    p = _write(tmp_path, COUNTER)
    task = make_task(f"automaton:{p}")
    model = build_model(ModelConfig("full", task.d_vocab, 4, task.n_classes))
    save_checkpoint(tmp_path / "ck", model, task.spec, {"seed": 0}, {"accuracy": {}})
    assert read_config(tmp_path / "ck")["automaton"] == COUNTER
    p.write_text(json.dumps({**COUNTER, "outputs": [2, 1, 0]}))   # the file changes ...
    _, t1 = load_checkpoint(tmp_path / "ck")
    p.unlink()                                                     # ... then is gone
    _, t2 = load_checkpoint(tmp_path / "ck")
    assert t1.automaton_record() == t2.automaton_record() == COUNTER
    assert t2.spec == task.spec


def test_train_checkpoint_analyze_round_trip(tmp_path, capsys, monkeypatch):
    """CLI train on an automaton JSON (tiny, seconds) -> checkpoint -> analyze --json, file gone."""
    from workbench.cli import main

    monkeypatch.chdir(tmp_path)
    _write(tmp_path, COUNTER, "counter3.json")
    assert main(["train", "--task", "automaton:counter3.json", "--variant", "full",
                 "--hidden", "8", "--steps", "300", "--eval-lengths", "10,50", "--out", "ck",
                 "--no-progress"]) == 0
    (tmp_path / "counter3.json").unlink()
    capsys.readouterr()
    assert main(["analyze", "ck", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "automaton:counter3.json" and out["variant"] == "full"
    assert set(out["accuracy"]) == {"10", "50"}
    assert out["automaton"]["task_states"] == 3 and "errors" not in out
    assert "representation" not in out   # not a group task: left out, never faked


def test_changed_file_is_retrained_not_reused(tmp_path):
    from workbench.checkpoints import read_config
    from workbench.training import TrainConfig, train

    p = _write(tmp_path, COUNTER)
    cfg = TrainConfig(task=f"automaton:{p}", variant="full", d_hidden=4, steps=5, eval_lengths=(10,),
                      val_length=10, val_sequences=16, long_val_length=20, long_val_sequences=16,
                      eval_sequences=32)
    assert not train(cfg, tmp_path / "ck", progress=False).reused
    assert train(cfg, tmp_path / "ck", progress=False).reused      # same file: reused
    changed = {**COUNTER, "outputs": [2, 1, 0]}
    p.write_text(json.dumps(changed))
    assert not train(cfg, tmp_path / "ck", progress=False).reused  # changed contents: retrained
    assert read_config(tmp_path / "ck")["automaton"] == changed


def test_in_memory_automaton_task_saves_and_loads(tmp_path):
    from workbench.checkpoints import load_checkpoint, save_checkpoint
    from workbench.models import ModelConfig, build_model

    task = Task.from_automaton(**COUNTER)
    model = build_model(ModelConfig("full", 2, 4, 3))
    save_checkpoint(tmp_path / "ck", model, task, {"seed": 0}, {"accuracy": {}})
    _, loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.spec == "automaton" and loaded.automaton_record() == COUNTER
