"""The layout's rules, checked on the source: no import cycles among project modules, `workbench`
never imports `analyses`, the plot layer imports no analysis, and variants are listed in one
module only (``workbench/variants.py``)."""
import ast
from pathlib import Path

from workbench.variants import VARIANTS, ZOO_KEYS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("workbench", "analyses")
SCANNED = [p for pkg in ("workbench", "analyses", "benchmarks", "scripts") for p in sorted((ROOT / pkg).rglob("*.py"))]
SCANNED.append(ROOT / "notebooks" / "make_notebooks.py")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _is_type_checking(node) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> set[str]:
    """Project modules imported anywhere in ``path`` (function bodies included, TYPE_CHECKING not)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()

    def resolve(mod: str) -> str | None:
        while mod and mod not in MODULES:
            mod = mod.rpartition(".")[0]
        return mod or None

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                for a in child.names:
                    if a.name.split(".")[0] in PACKAGES:
                        found.add(resolve(a.name))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")
                    up = up[:len(up) - (child.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                if base.split(".")[0] in PACKAGES:
                    for a in child.names:
                        full = f"{base}.{a.name}"
                        found.add(full if full in MODULES else resolve(base))
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(None)
    found.discard(name)
    return found


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_import_graph_sees_the_packages():
    assert {"analyses._core", "analyses.groups.representations", "analyses.reporting.registry",
            "workbench.variants", "workbench.models.bilinear"} <= set(GRAPH)
    assert "analyses._core" in GRAPH["analyses.spectral"]
    assert "analyses.groups.representations" in GRAPH["analyses.groups.comparison"]


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_among_project_modules():
    assert _cycles(GRAPH) == []


def test_workbench_never_imports_analyses():
    bad = {m: sorted(d for d in deps if d.startswith("analyses")) for m, deps in GRAPH.items()
           if m.startswith("workbench")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_plot_layer_imports_no_analysis():
    bad = {m: sorted(d for d in deps if d.startswith("analyses") and not d.startswith(("analyses.plot", "analyses._result")))
           for m, deps in GRAPH.items() if m.startswith("analyses.plot")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_core_depends_on_no_other_analysis():
    assert {d for d in GRAPH["analyses._core"] if d.startswith("analyses")} == set()


NAMES = set(VARIANTS) | set(ZOO_KEYS)


def _variant_listings(path: Path) -> list[str]:
    """Literal collections naming 3 or more variants or zoo keys (tuple, list, set, dict keys)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        names = [e.value for e in items if isinstance(e, ast.Constant) and e.value in NAMES]
        if len(set(names)) >= 3:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {names}")
    return found


def test_variant_listing_detector_sees_a_listing(tmp_path):
    p = ROOT / "workbench" / "variants.py"
    assert _variant_listings(p), "the registry itself must be seen as a listing"


def test_variants_are_listed_in_one_module_only():
    listings = [hit for p in SCANNED if p.name != "variants.py" or p.parent.name != "workbench"
                for hit in _variant_listings(p)]
    assert listings == []
