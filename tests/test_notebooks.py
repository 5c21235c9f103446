"""Notebooks: in sync with their generator, library calls only, clean committed outputs, and
executed top to bottom with their final ``ANSWER`` checked.

Every notebook states its question in its first cell; its last code cell sets ``ANSWER`` (a
JSON-safe dict) and prints it as one JSON line. ``CHECKS`` below says what each answer must be.
Execution needs the shipped zoo (``checkpoints/index.json``, or ``$WORKBENCH_CHECKPOINTS``); it
is skipped, with that reason, only when the index is absent. Notebooks run in subprocesses,
``$WORKBENCH_NOTEBOOK_JOBS`` at a time (default: 2, or 1 on a one-core machine).
"""
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
#: Text that must not appear in an output: a build machine's paths and warnings.
FORBIDDEN = (str(ROOT), "/work/", "/home/", "/tmp/", "site-packages", "Warning", "Traceback")


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", NB_DIR / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GENERATED = _generator().NOTEBOOKS


def _paper_reproduced(a):
    from analyses.reporting.figures import Zoo
    from analyses.reporting.paper_comparison import compare_with_paper

    return compare_with_paper(Zoo.open(), tol=a["tol"]).summary()["n_reproduced"]


#: What each notebook's ANSWER must satisfy (the claims its last markdown cell makes).
CHECKS = {
    "01_quickstart": lambda a: a["accuracy_500"] >= 0.99 and a["follows_transplant"] >= 0.95 and a["control"] <= 0.1,
    "02_hooks_and_patching": lambda a: a["spearman"] >= 0.9 and a["state_recovery_before_answer"] >= 0.9,
    "03_hierarchy_explained": lambda a: (a["full_fsm_commutator"] > 0.1 and a["diag_fsm_commutator"] < 1e-6
                                         and a["real_diag_max_imag"] < 1e-6 and a["mamba_longest_decay"] < 500
                                         and a["rotation_phase_error"]["cyclic:2"] < 1e-2
                                         and a["rotation_phase_error"]["cyclic:25"] < 1e-2
                                         and a["rotation_fsm2_normalized_500"] < 0.3),
    "04_group_representations": lambda a: (a["S3"] == "2a" and a["S3_faithful"] and a["A5_faithful"]
                                           and "3×3a" in a["A4"] and "2×2a" in a["Q8"]
                                           and a["Q8_quaternionic_dims"] == 4 and not a["Q8_quaternionic_real_form"]),
    "05_learned_vs_constructed": lambda a: (not a["S3_equivalent_fsm"] and a["S3_equivalent_2a"]
                                            and a["S3_causal_accuracy"] >= 0.95 and a["A5_snapped_5000"] >= 0.99
                                            and a["A5_learned_5000"] < a["A5_snapped_5000"]
                                            and 500 < a["A5_predicted_break"] < 10_000),
    "06_automaton_extraction": lambda a: (a["fsm5_full_isomorphic"] and not a["fsm5_block2_isomorphic"]
                                          and a["own_isomorphic"] and a["own_states"] == 4),
    "07_train_your_own": lambda a: a["full"]["normalized_500"] >= 0.9 and a["real_diag"]["normalized_500"] < 0.3,
    "08_bring_your_own_model": lambda a: (a["logit_gap"] < 1e-5 and a["nnsight_gap"] < 1e-5
                                          and a["accuracy_500"] >= 0.99 and "spectra" in a["analyses"]),
    "09_paper_tables": lambda a: (a["n_cells"] == 72 and a["n_reproduced"] == _paper_reproduced(a)
                                  and a["fraction_reproduced"] >= 0.5),
}


def _answer(nb) -> dict:
    """The JSON line the last code cell printed."""
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.get("outputs", []) if o.get("output_type") == "stream")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines, "the last cell printed no ANSWER"
    return json.loads(lines[-1])


def _output_problems(nb) -> list[str]:
    problems = []
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []):
            kind = o.get("output_type")
            if kind == "error":
                problems.append(f"cell {i}: error {o.get('ename')}: {o.get('evalue')}")
            if kind == "stream" and o.get("name") == "stderr":
                problems.append(f"cell {i}: stderr output {o.get('text', '')[:200]!r}")
            texts = [o.get("text", "")] + [v for k, v in o.get("data", {}).items() if k.startswith("text/")]
            for t in texts:
                t = "".join(t) if isinstance(t, list) else t
                problems += [f"cell {i}: output contains {bad!r}" for bad in FORBIDDEN if bad in t]
            if len(o.get("data", {}).get("image/png", "")) >= 200_000:
                problems.append(f"cell {i}: an image above 200 kB")
    return problems


def test_all_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == list(GENERATED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_generator_and_calls_library_only(path):
    nb = nbformat.read(path, as_version=4)
    cells = GENERATED[path.stem]
    assert [(c.cell_type, c.source) for c in nb.cells] == [("markdown" if k == "md" else "code", s) for k, s in cells], \
        "notebook out of sync with notebooks/make_notebooks.py: rerun it"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "def " not in code.replace("def transplant", ""), "notebooks hold no logic: move functions to the library"
    assert any(call in code for call in ("load_checkpoint(", "Zoo.open()", "train(")), "no model loaded or trained"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_states_question_first_and_answer_last(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and "**Question.**" in nb.cells[0].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[-1].source.startswith("ANSWER = ")
    assert any("assert my_answer" in c.source for c in code), "no 'try it' cell with a checked answer"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_are_clean_and_answer(path):
    """What a reader sees in the browser: executed, no warning, traceback or build path, and the
    committed answer satisfies the same check as a fresh run."""
    nb = nbformat.read(path, as_version=4)
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), \
        "committed notebook is not executed: python notebooks/make_notebooks.py --execute"
    assert _output_problems(nb) == []
    assert CHECKS[path.stem](_answer(nb)), _answer(nb)


def _zoo_index():
    from workbench.checkpoints import zoo_root

    return zoo_root() / "index.json"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run every notebook in a subprocess (the generator's own --execute), a few at a time."""
    if not _zoo_index().is_file():
        pytest.skip(f"no zoo index at {_zoo_index()}: build the zoo (`make zoo`) to execute the notebooks")
    out = tmp_path_factory.mktemp("notebooks")
    jobs = int(os.environ.get("WORKBENCH_NOTEBOOK_JOBS", min(2, os.cpu_count() or 1)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    pending, running, results = list(GENERATED), {}, {}
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            proc = subprocess.Popen([sys.executable, str(NB_DIR / "make_notebooks.py"), "--execute", name,
                                     "--out", str(out)], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            running[name] = (proc, time.perf_counter())
        for name, (proc, t0) in list(running.items()):
            if proc.poll() is not None:
                stdout, stderr = proc.communicate()
                results[name] = (proc.returncode, time.perf_counter() - t0, stdout + stderr)
                del running[name]
        time.sleep(0.2)
    print("notebook execution times (s):", {k: round(v[1], 1) for k, v in results.items()})
    return out, results


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", list(GENERATED))
def test_notebook_runs_top_to_bottom_and_answers(executed, name):
    out, results = executed
    returncode, _, log = results[name]
    assert returncode == 0, log[-3000:]
    nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
    assert _output_problems(nb) == []
    answer = _answer(nb)
    assert CHECKS[name](answer), answer
