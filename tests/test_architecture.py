"""The floors of the code hold: no import cycle anywhere in ``src/mesalab`` (module-level and deferred imports
alike), nothing below orchestration imports it, and ``cli.py`` only parses and dispatches."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mesalab"
ORCHESTRATION = ("mesalab.studies", "mesalab.cli", "mesalab.__main__")
BELOW_ORCHESTRATION = ("mesalab.report", "mesalab.results", "mesalab.diagnostics", "mesalab.tasks", "mesalab.models",
                       "mesalab.analysis", "mesalab.optimizers", "mesalab.experiments")


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Every mesalab module ``path`` imports, anywhere in the file (``from pkg import sub`` counts ``pkg.sub`` when
    it is a module, else ``pkg``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t.startswith("mesalab") and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), plus self-loops."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def is_under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_cycle_finder_finds_planted_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": set()}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_reader_sees_deferred_and_relative_imports(tmp_path):
    known = {"mesalab", "mesalab.x", "mesalab.x.y", "mesalab.z"}
    f = tmp_path / "m.py"
    f.write_text("import numpy\nfrom mesalab.x import y\n\ndef f():\n    from mesalab import z\n    from . import y\n")
    assert imports_of(f, "mesalab.x.m", known) == {"mesalab.x.y", "mesalab.z"}


def test_no_import_cycle_in_src():
    found = cycles(graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("floor", BELOW_ORCHESTRATION)
def test_floors_below_orchestration_never_import_it(floor):
    bad = {v: sorted(w for w in ws if is_under(w, ORCHESTRATION)) for v, ws in graph().items() if is_under(v, (floor,))}
    bad = {v: ws for v, ws in bad.items() if ws}
    assert bad == {}, f"{floor} imports orchestration: {bad}"


def test_cli_only_parses_and_dispatches():
    text = (SRC / "cli.py").read_text()
    for word in ("SELECT ", "duckdb", "re.findall", "html.unescape", "bootstrap_mean_ci", "wilson_interval",
                 "np.mean", "import numpy", "open_results", "query("):
        assert word not in text, f"cli.py does {word!r} itself: that belongs below it"
    g = graph()
    assert not {w for w in g["mesalab.cli"] if is_under(w, ("mesalab.results.store", "mesalab.diagnostics.stats"))}
