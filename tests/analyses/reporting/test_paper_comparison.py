"""compare_with_paper: the zoo's medians against the paper's table, cell by cell."""
import json

import numpy as np
import pytest

from analyses.reporting.paper_comparison import compare_with_paper
from workbench.variants import PAPER_CYCLIC_ROWS


class _Cells:
    """A zoo that answers ``median_cells`` from a dict (the only method compare_with_paper reads)."""

    def __init__(self, cells):
        self._cells = cells

    def median_cells(self, metric="norm_500"):
        return self._cells


def test_cells_within_tolerance_reproduce_and_others_are_listed():
    paper_full_c2 = PAPER_CYCLIC_ROWS["full"][0]          # 1.00
    paper_block1_c3 = PAPER_CYCLIC_ROWS["block1"][1]      # 0.00
    zoo = _Cells({("full", "cyclic:2"): (paper_full_c2 - 0.05, 1.0, 3),
                  ("block1", "cyclic:3"): (paper_block1_c3 + 0.5, 0.9, 3)})
    res = compare_with_paper(zoo, tol=0.1)
    assert res.n_cells == 2
    assert res.reproduced.tolist() == [True, False]
    assert res.fraction_reproduced == 0.5
    assert res.max_abs_difference == pytest.approx(0.5)
    assert res.disagreements() == [{"key": "block1", "task": "cyclic:3", "paper": 0.0, "median": 0.5, "best": 0.9}]
    assert len(res.missing) == 70                          # 72 paper cells, two present
    json.dumps(res.summary())
    assert "1 of 2 cells" in res.sentence()
    assert len(repr(res)) < 500


def test_tolerance_decides_and_bad_tolerance_is_refused():
    zoo = _Cells({("full", "cyclic:2"): (0.8, 1.0, 3)})
    assert not compare_with_paper(zoo, tol=0.1).reproduced[0]
    assert compare_with_paper(zoo, tol=0.25).reproduced[0]
    with pytest.raises(ValueError, match="tol=2"):
        compare_with_paper(zoo, tol=2)


def test_plot_draws_one_point_per_cell():
    import matplotlib
    matplotlib.use("Agg")
    zoo = _Cells({("full", "cyclic:2"): (1.0, 1.0, 3), ("full", "cyclic:3"): (0.2, 0.4, 3)})
    fig = compare_with_paper(zoo).plot()
    offsets = [c.get_offsets() for c in fig.axes[0].collections[1:]]
    assert sum(len(o) for o in offsets) == 4 and np.isfinite(np.concatenate(offsets)).all()
