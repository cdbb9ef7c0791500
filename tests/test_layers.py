"""The package's import graph: no cycles, and every layer imports only the layers below it.

The graph is read from the source with ``ast``, not by importing: every ``import``
and ``from ... import`` of a pipectl module counts, at module level and inside
functions alike (a lazy import is a dependency that only shows up later). An
``import`` guarded by ``if TYPE_CHECKING:`` counts too. ``from pkg import name``
is an edge to ``pkg.name`` when that is a module, else to ``pkg``.

Layers, lowest first; a module may import its own layer and the ones below:
model < timing < spec < state < engine, exec < ops, export < views < cli
(``engine`` and ``exec`` are one layer: the engine starts tries, and the reaper and
the timer, which live in exec, step the engine; within it only cycles are refused).
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
LAYERS = [("model",), ("timing",), ("spec",), ("state",), ("engine", "exec"), ("ops", "export"), ("views",),
          ("cli", "__main__")]
RANK = {pkg: i for i, names in enumerate(LAYERS) for pkg in names}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "pipectl").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported pipectl module: line of its first import}."""
    mods = modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:  # `import pipectl.a.b` names pipectl.a.b (or the nearest package)
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("pipectl.") and (path.name != "__init__.py" or t != package):
                    edges.setdefault(t, node.lineno)
        graph[name] = edges
    return graph


def layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "pipectl"


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_graph_sees_module_and_function_level_imports():
    graph = import_graph()
    # module level
    assert "pipectl.engine.context" in graph["pipectl.engine.step"]
    # inside a function
    assert "pipectl.engine.quicktick" in graph["pipectl.__main__"]
    assert "pipectl.engine.step" in graph["pipectl.exec.reap"]
    # `from pipectl.engine import explain` is an edge to the module explain
    assert any(m == "pipectl.engine.explain" for m in graph["pipectl.views.reading"])


def test_cycle_finder_finds_a_lazy_cycle():
    graph = {"pipectl.a": {"pipectl.b": 1}, "pipectl.b": {"pipectl.c": 3}, "pipectl.c": {"pipectl.a": 9},
             "pipectl.d": {"pipectl.a": 1}}
    assert cycles(graph) == [["pipectl.a", "pipectl.b", "pipectl.c"]]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], "import cycles (module and function-level imports alike): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_every_package_has_a_layer():
    unplaced = sorted({layer(m) for m in modules()} - set(RANK) - {"pipectl"})
    assert unplaced == [], f"packages not placed in tests/test_layers.py LAYERS: {unplaced}"


def test_lower_layers_never_import_higher_ones():
    graph = import_graph()
    paths = modules()
    wrong = []
    for module, edges in sorted(graph.items()):
        if layer(module) not in RANK:
            continue
        for target, line in sorted(edges.items()):
            if layer(target) in RANK and RANK[layer(target)] > RANK[layer(module)]:
                wrong.append(f"{paths[module].relative_to(SRC.parent)}:{line}: {module} imports {target}")
    assert wrong == [], "layer order is " + " < ".join("/".join(n) for n in LAYERS) + ":\n" + "\n".join(wrong)


def test_state_and_model_stay_below_the_engine():
    """Spelled out because the engine grew out of a module every layer reached into."""
    graph = import_graph()
    for module, edges in graph.items():
        if layer(module) in ("model", "timing", "spec", "state"):
            assert not [t for t in edges if layer(t) in ("engine", "exec", "ops", "views", "cli")], module


def test_init_files_stay_empty():
    """Import time: importing a package must not import anything."""
    for path in (SRC / "pipectl").rglob("__init__.py"):
        if path.parent.name == "pipectl":
            continue
        assert path.read_text().strip() == "", path
