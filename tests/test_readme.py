"""The README's Python examples run, in order, against the shipped zoo.

A newcomer copies these blocks first; if an API they show changes, this test fails.
"""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_examples():
    assert len(_python_blocks(README.read_text())) >= 4


def test_readme_examples_run():
    namespace: dict = {}
    for i, block in enumerate(_python_blocks(README.read_text())):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        except Exception as exc:  # name the block: the traceback alone points into exec
            pytest.fail(f"README python block {i} failed: {type(exc).__name__}: {exc}\n{block}")
