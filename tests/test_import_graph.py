"""The import graph of ``benchmark/`` (issue 23): no cycle between modules, and ``providers/`` below the pipeline.

Every ``import`` and ``from ... import`` of every module counts, at module level and inside functions: a late
import hides a cycle from Python's import machinery, not from the design. Only imports under ``if TYPE_CHECKING:``
are left out (they never run). ``from package import name`` is an edge to the submodule when ``name`` is one, else
to the package; plug-ins named by strings (``BACKENDS``, ``TRACKS``, ``BUILD_SPECS``) are not edges.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Edges that close a cycle today, each through a module another change is editing (issue 23 lists them); the graph
#: less these edges must have no cycle, so any new cycle fails. Remove an entry when its cycle is gone (a test checks).
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {
}

#: Pipeline modules (issue 23: the pipeline sits above providers/, the model building blocks below both): every
#: module of lm/ (plan, stages, tidy, channels, judges, settings, ...) and what drives or reports a run.
PIPELINE = (
    "benchmark.lm",
    "benchmark.cli",
    "benchmark.registry",
    "benchmark.tracks",
    "benchmark.groups",
    "benchmark.sweep",
    "benchmark.report",
    "benchmark.publish",
    "benchmark.analysis",
    "benchmark.bundle",
    "benchmark.leaderboard",
    "benchmark.classifier",
)
#: The model building blocks (benchmark/lmcore/) and the only modules they may reach, directly or through each
#: other: the engine's leaf modules, which import nothing above them.
BLOCKS = "benchmark.lmcore"
BLOCKS_MAY_REACH = ("benchmark.lmcore", "benchmark.errors", "benchmark.files", "benchmark.hashing",
                    "benchmark.specs_base", "benchmark.vocabulary")


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` under ``root`` (a package is its ``__init__.py``)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement that can run, and whether it sits inside a function."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    yield from walk_one(other, in_function)
                continue
            yield from walk_one(child, in_function)

    def walk_one(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        yield from walk(node, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    yield from walk(tree, False)


def import_edges(root: Path, package: str) -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> where (``path:line``, ``(function)`` for late imports), over modules of ``package``."""
    mods = modules(root, package)

    def known(name: str) -> str | None:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in mods else None

    edges: dict[tuple[str, str], list[str]] = {}
    for name, path in mods.items():
        for node, in_function in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the importer's package
                    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                found = known(target)
                if found is not None and found != name:
                    where = f"{path.relative_to(root)}:{node.lineno}" + (" (function)" if in_function else "")
                    seen = edges.setdefault((name, found), [])
                    if where not in seen:  # one statement importing several names of one module
                        seen.append(where)
    return edges


def cycles(edges: Mapping[tuple[str, str], object]) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted, in sorted order."""
    succ: dict[str, set[str]] = {}
    for a, b in edges:
        succ.setdefault(a, set()).add(b)
        succ.setdefault(b, set())
    reach: dict[str, set[str]] = {}
    for start in succ:
        seen, todo = set(), [start]
        while todo:
            for nxt in succ[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reach[start] = seen
    comps = {tuple(sorted(n for n in reach[m] if m in reach[n])) for m in succ if m in reach[m]}
    return sorted(list(c) for c in comps if len(c) > 1)


def _describe(comp: list[str], edges: Mapping[tuple[str, str], list[str]]) -> str:
    inside = set(comp)
    lines = [f"{a} -> {b}: {', '.join(w)}" for (a, b), w in sorted(edges.items()) if a in inside and b in inside]
    return "cycle " + " / ".join(comp) + ":\n    " + "\n    ".join(lines)


# -- the checker itself -----------------------------------------------------------------------------------------
def test_checker_sees_late_relative_and_type_only_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .leaf import x\n")
    (pkg / "sub" / "leaf.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import top\nelse:\n    import json\n"
        "x = 1\ndef f():\n    from pkg.top import y\n    return y\n"
    )
    (pkg / "top.py").write_text("import pkg.sub\nfrom pkg import sub\ny = 2\n")
    edges = import_edges(tmp_path, "pkg")
    assert set(edges) == {("pkg.sub", "pkg.sub.leaf"), ("pkg.sub.leaf", "pkg.top"), ("pkg.top", "pkg.sub")}
    assert edges[("pkg.sub.leaf", "pkg.top")] == ["pkg/sub/leaf.py:8 (function)"]
    assert edges[("pkg.top", "pkg.sub")] == ["pkg/top.py:1", "pkg/top.py:2"]
    assert cycles(edges) == [["pkg.sub", "pkg.sub.leaf", "pkg.top"]]
    assert cycles({k: v for k, v in edges.items() if k != ("pkg.top", "pkg.sub")}) == []


# -- benchmark/ ---------------------------------------------------------------------------------------------------
def test_no_import_cycle_between_modules() -> None:
    edges = import_edges(ROOT, "benchmark")
    left = {e: w for e, w in edges.items() if e not in KNOWN_CYCLE_EDGES}
    found = cycles(left)
    assert not found, "import cycles (late imports count too):\n" + "\n".join(_describe(c, left) for c in found)


def test_known_cycle_edges_still_close_a_cycle() -> None:
    """Each exception must still exist and still sit on a cycle; a fixed one is removed from the list."""
    edges = import_edges(ROOT, "benchmark")
    comps = cycles(edges)
    stale = [f"{a} -> {b}" for a, b in KNOWN_CYCLE_EDGES
             if (a, b) not in edges or not any(a in comp and b in comp for comp in comps)]
    assert not stale, f"remove from KNOWN_CYCLE_EDGES (no longer a cycle): {stale}"


def _under(name: str, packages: tuple[str, ...] | str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in ((packages,) if isinstance(packages, str) else packages))


def test_providers_and_building_blocks_import_no_pipeline_module() -> None:
    edges = import_edges(ROOT, "benchmark")
    bad = [
        f"{a} -> {b}: {', '.join(w)}"
        for (a, b), w in sorted(edges.items())
        if _under(a, ("benchmark.providers", BLOCKS)) and _under(b, PIPELINE)
    ]
    assert not bad, "providers/ and lmcore/ must sit below the pipeline (issue 23):\n" + "\n".join(bad)


def _reach(edges: Mapping[tuple[str, str], object], start: set[str]) -> dict[str, str]:
    """Every module ``start`` reaches through ``edges``, each with the module it was first reached from."""
    succ: dict[str, set[str]] = {}
    for a, b in edges:
        succ.setdefault(a, set()).add(b)
    via: dict[str, str] = {}
    todo = list(start)
    while todo:
        m = todo.pop()
        for n in sorted(succ.get(m, ())):
            if n not in start and n not in via:
                via[n] = m
                todo.append(n)
    return via


def test_building_blocks_reach_only_leaf_modules() -> None:
    """lmcore/ is below providers/ and the pipeline: what it imports, directly or not, is lmcore/ or a leaf."""
    blocks = {m for m in modules(ROOT, "benchmark") if _under(m, BLOCKS)}
    assert blocks, "benchmark/lmcore/ is missing"
    via = _reach(import_edges(ROOT, "benchmark"), blocks)
    bad = sorted(m for m in via if not _under(m, BLOCKS_MAY_REACH))
    assert not bad, "lmcore/ reaches " + ", ".join(f"{m} (via {via[m]})" for m in bad)


#: Edges through which providers/ still reaches the pipeline indirectly (e.g. through the zoo a backend builds). None
#: is left: the zoo's numbers prompts, filter and answers come from lmcore/numbers.py and its trait files load through
#: specs.py. The providers' reach less these edges must hold no pipeline module; remove an entry when its edge is gone
#: (a test checks).
KNOWN_PROVIDER_ROUTES: dict[tuple[str, str], str] = {
}


def test_providers_reach_no_pipeline_module_but_through_known_routes() -> None:
    edges = import_edges(ROOT, "benchmark")
    stale = [f"{a} -> {b}" for a, b in KNOWN_PROVIDER_ROUTES if (a, b) not in edges]
    assert not stale, f"remove from KNOWN_PROVIDER_ROUTES (the import is gone): {stale}"
    providers = {m for m in modules(ROOT, "benchmark") if _under(m, "benchmark.providers")}
    via = _reach({e: w for e, w in edges.items() if e not in KNOWN_PROVIDER_ROUTES}, providers)
    bad = sorted(m for m in via if _under(m, PIPELINE))
    assert not bad, "providers/ reaches pipeline modules: " + ", ".join(f"{m} (via {via[m]})" for m in bad)
