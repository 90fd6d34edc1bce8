"""The package's import graph, function-local imports included (tools/import_graph.py): no cycle,
and no module that is not a pytest plugin imports one (plugins are leaves: hooks and fixtures)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import import_graph


def test_the_scanner_sees_function_local_imports_and_cycles(tmp_path: Path) -> None:
    pkg = tmp_path / import_graph.PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from speedbench_plugin.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n    from speedbench_plugin.sub.plugin import X\n")
    (pkg / "sub" / "plugin.py").write_text("X = 1\n")
    graph = import_graph.build_graph(tmp_path)
    assert import_graph.cycles(graph) == [["speedbench_plugin.a", "speedbench_plugin.sub.b"]]
    assert import_graph.plugin_imports(graph, set()) == [("speedbench_plugin.sub.b", "speedbench_plugin.sub.plugin")]


def test_no_import_cycle() -> None:
    assert import_graph.cycles(import_graph.build_graph(ROOT)) == []


def test_no_module_imports_a_plugin() -> None:
    graph = import_graph.build_graph(ROOT)
    plugins = import_graph.entry_point_plugins(ROOT)
    assert "speedbench_plugin.analyses.vocab_plugin" in plugins and "speedbench_plugin.plugin" in plugins
    assert import_graph.plugin_imports(graph, plugins) == []
