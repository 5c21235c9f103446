"""Entry point: ``python -m workbench ...`` (see :mod:`workbench.cli`)."""
import os

# One BLAS thread per process, set before numpy loads: on the 2-core machine BLAS threads fight
# with torch's and with parallel zoo jobs (a 60x60 SVD went from 1 ms to 15 ms).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from workbench.cli import main  # noqa: E402

raise SystemExit(main())
