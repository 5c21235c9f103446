"""Notebooks: in sync with their generator, library calls only, and executed top to bottom.

Execution needs the shipped zoo (``checkpoints/index.json``, or ``$WORKBENCH_CHECKPOINTS``); it
is skipped, with that reason, only when the index is absent.
"""
import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["01_quickstart", "02_hooks_and_patching", "03_transition_spectra", "04_group_representations",
            "05_learned_vs_constructed", "06_automaton_extraction", "07_hierarchy_table"]


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", NB_DIR / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_all_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_generator_and_calls_library_only(path):
    nb = nbformat.read(path, as_version=4)
    cells = _generator().NOTEBOOKS[path.stem]
    assert [(c.cell_type, c.source) for c in nb.cells] == [("markdown" if k == "md" else "code", s) for k, s in cells], \
        "notebook out of sync with notebooks/make_notebooks.py: rerun it"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "def " not in code.replace("def transplant", ""), "notebooks hold no logic: move functions to the library"
    assert "load_checkpoint(" in code or "Zoo.open()" in code
    # light outputs: no embedded image above ~200 kB
    for c in nb.cells:
        for o in c.get("outputs", []):
            assert len(o.get("data", {}).get("image/png", "")) < 200_000


def _zoo_index():
    from workbench.checkpoints import zoo_root

    return zoo_root() / "index.json"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path):
    if not _zoo_index().is_file():
        pytest.skip(f"no zoo index at {_zoo_index()}: build the zoo (`make zoo`) to execute the notebooks")
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
