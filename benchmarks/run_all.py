"""Run every benchmark script in turn (`make bench`), one thread each, and print their output.

Each script prints its own numbers beside a reference measured in the same process; run them on
an otherwise idle machine (they are not tests and assert nothing about speed).
"""
import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = ["bench_recurrence.py", "bench_groups.py", "bench_sampling.py",
           "bench_representations.py", "bench_analyses.py", "bench_transformer.py",
           "bench_attribution.py"]


def main() -> int:
    here = Path(__file__).resolve().parent
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    failed = []
    for name in SCRIPTS:
        print(f"\n=== {name}", flush=True)
        if subprocess.call([sys.executable, str(here / name)], env=env) != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
