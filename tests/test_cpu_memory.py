"""retain_freed_memory applies on glibc (its speed effect is measured in benchmarks/bench_training.py)."""
import sys

import pytest

from workbench.cpu_memory import retain_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retain_applies_and_is_idempotent():
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True
