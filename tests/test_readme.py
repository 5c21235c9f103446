"""The README's and the docs' Python examples run, in order, against the shipped zoo, and print
what the page says they print.

A newcomer copies these blocks first; if an API they show changes, or a number they show moves,
this test fails. Convention (docs/internals.md): a top-level expression whose line ends in
``# -> TEXT`` must evaluate to something whose ``repr`` matches TEXT, where ``...`` stands for any
text (doctest's ELLIPSIS) and runs of whitespace compare equal. Each page runs in its own
namespace, its blocks in order. A block opened with ```` ```python api ```` is a signature sketch,
not code, and is not run.
"""
import ast
import doctest
import linecache
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MARK = "# -> "
_CHECKER = doctest.OutputChecker()
_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _expected(line: str) -> str | None:
    """The text after the output marker of a source line, or None (the marker inside a string
    does not count: only a trailing comment does)."""
    i = line.rfind(MARK)
    return None if i < 0 else line[i + len(MARK):].strip()


def output_matches(value, expected: str) -> bool:
    return _CHECKER.check_output(expected + "\n", repr(value) + "\n", _FLAGS)


def run_block(block: str, namespace: dict, where: str) -> int:
    """Run one block statement by statement; check each marked expression. Returns how many
    outputs were checked."""
    tree = ast.parse(block, filename=where)
    lines = block.splitlines()
    # Tools that read their caller's source (nnsight's trace reads its `with` body) find it here.
    linecache.cache[where] = (len(block), None, block.splitlines(True), where)
    checked = 0
    for node in tree.body:
        expected = _expected(lines[node.end_lineno - 1])
        if expected is not None and not isinstance(node, ast.Expr):
            raise AssertionError(f"{where} line {node.end_lineno}: '{MARK.strip()}' follows a "
                                 f"{type(node).__name__}, not an expression; nothing would be checked")
        if expected is None or not isinstance(node, ast.Expr):
            exec(compile(ast.Module([node], type_ignores=[]), where, "exec"), namespace)
            continue
        value = eval(compile(ast.Expression(node.value), where, "eval"), namespace)
        if not output_matches(value, expected):
            raise AssertionError(f"{where} line {node.end_lineno}: {ast.get_source_segment(block, node)}\n"
                                 f"  page says: {expected}\n  got:       {value!r}")
        checked += 1
    return checked


def test_readme_has_examples():
    assert len(_python_blocks(README.read_text())) >= 4


def test_readme_examples_run():
    namespace: dict = {}
    checked = 0
    for i, block in enumerate(_python_blocks(README.read_text())):
        try:
            checked += run_block(block, namespace, f"README.md python block {i}")
        except AssertionError:
            raise
        except Exception as exc:  # name the block: the traceback alone points into exec
            pytest.fail(f"README python block {i} failed: {type(exc).__name__}: {exc}\n{block}")
    assert checked >= 4, "the README's quickstart shows what its lines print"


@pytest.mark.parametrize("page", [p for p in PAGES if p != README], ids=lambda p: p.name)
def test_docs_examples_run_and_print_what_they_say(page):
    namespace: dict = {}
    checked = 0
    for i, block in enumerate(_python_blocks(page.read_text())):
        where = f"docs/{page.name} python block {i}"
        try:
            checked += run_block(block, namespace, where)
        except AssertionError:
            raise
        except Exception as exc:
            pytest.fail(f"{where} failed: {type(exc).__name__}: {exc}\n{block}")
    if _python_blocks(page.read_text()):
        assert checked >= 1, f"docs/{page.name} has examples but shows no output ('{MARK}...')"


def test_the_docs_show_many_outputs():
    n = sum(_expected(line) is not None for p in PAGES for b in _python_blocks(p.read_text())
            for line in b.splitlines())
    assert n >= 25


def test_output_check_catches_a_wrong_output():
    ns: dict = {}
    assert run_block("x = 2\nx + 1  # -> 3\n", ns, "t") == 1
    with pytest.raises(AssertionError, match="page says: 4"):
        run_block("x + 1  # -> 4\n", ns, "t")
    assert output_matches("approximately 2a of S3 on a plane", "'approximately 2a ...'")
    assert not output_matches("exactly 2a", "'approximately 2a ...'")
    with pytest.raises(AssertionError, match="not an expression"):
        run_block("y = 1  # -> 1\n", ns, "t")
