"""Import graph of speedbench_plugin, function-local imports included.

Why: cycles hidden behind imports inside functions and imports of plugin
modules from non-plugin modules make the layers unreadable; this scan finds
both (import-linter sees only part of the graph when imports are lazy).
Run: python tools/import_graph.py  (prints cycles and plugin imports).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import tomllib

PACKAGE = "speedbench_plugin"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def build_graph(root: Path) -> dict[str, set[str]]:
    """Edges module -> internal modules it imports (anywhere in the file)."""
    files = {module_name(p, root): p for p in (root / PACKAGE).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node)
                # `from pkg import sub` imports the submodule, not (only) pkg
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names
                ]
            for t in targets:
                # the longest known module that prefixes the target
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def entry_point_plugins(root: Path) -> set[str]:
    """The modules pyproject.toml registers as pytest plugins (``[project.entry-points.pytest11]``)."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    return set(data["project"]["entry-points"]["pytest11"].values())


def is_plugin(mod: str, plugins: set[str]) -> bool:
    """A pytest plugin module: registered as an entry point, or named ``plugin``."""
    return mod in plugins or mod.rsplit(".", 1)[-1] == "plugin"


def plugin_imports(graph: dict[str, set[str]], plugins: set[str]) -> list[tuple[str, str]]:
    """(importer, plugin) for every import of a plugin module by a module that is not one."""
    return sorted((m, t) for m, ts in graph.items() if not is_plugin(m, plugins)
                  for t in ts if is_plugin(t, plugins))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    graph = build_graph(root)
    found = cycles(graph)
    for comp in found:
        print("cycle:", " ".join(comp))
    bad = plugin_imports(graph, entry_point_plugins(root))
    for m, t in bad:
        print(f"plugin import: {m} -> {t}")
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(found)} cycles, {len(bad)} plugin imports")
    return 1 if found or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
