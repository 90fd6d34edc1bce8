"""MkDocs hooks: the reference pages are generated from the code at build time, so they cannot drift.

- ``reference/options.md``: every :class:`speedbench_plugin.options.Option` the package declares, with
  its ini key, type (read from its parser), default and help. ``tests/test_docs.py`` checks that this
  is exactly the set of ``--speedbench-*`` options ``pytest --help`` prints.
- ``reference/record.md``: the record's fields (``speedbench_plugin/record.py`` and the fidelity check
  in ``metrics.py``), their types, units (from the naming convention stated on the page) and the
  code's own comment on each field.

Registered in ``mkdocs.yml`` under ``hooks``; also importable on its own (the test uses
:func:`all_options` and :func:`options_markdown`).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import speedbench_plugin
from speedbench_plugin import metrics, record
from speedbench_plugin import options as o

OPTIONS_PAGE = "reference/options.md"
RECORD_PAGE = "reference/record.md"
FIGURES_PAGE = "figures.md"
FIGURES_DIR = "figures"  # under docs/, written by `make docs-figures`, git-ignored

# The parsers of options.py, named for a reader.
_KIND_NAMES: dict[Callable[..., Any], str] = {
    o.text: "text",
    o.positive_int: "positive integer",
    o.optional_positive_int: "positive integer (optional)",
    o.positive_ints: "comma list of positive integers",
    o.optional_positive_ints: "comma list of positive integers (optional)",
    o.token_counts: "comma list of token counts (`1k` = 1024)",
    o.optional_token_counts: "comma list of token counts (optional; `1k` = 1024)",
    o.words: "comma list of names",
    o.flag: "flag (true/false)",
    o.number_pair: "two numbers `A,B`",
    o.key_values: "`KEY=VALUE` (the value parsed as JSON where it is JSON)",
}


def _modules() -> Iterator[Any]:
    for info in pkgutil.walk_packages(speedbench_plugin.__path__, "speedbench_plugin."):
        if info.name.rsplit(".", 1)[-1] in ("__main__",):
            continue
        yield importlib.import_module(info.name)


def all_options() -> list[tuple[str, o.Option]]:
    """(declaring module, option) for every Option the package declares, sorted by name."""
    found: dict[str, tuple[str, o.Option]] = {}
    for module in _modules():
        for value in vars(module).values():
            if isinstance(value, o.Option) and value.name not in found:
                found[value.name] = (module.__name__, value)
    return sorted(found.values(), key=lambda item: item[1].name)


def kind_name(kind: Callable[..., Any]) -> str:
    """What an option's parser accepts, in words."""
    if kind in _KIND_NAMES:
        return _KIND_NAMES[kind]
    cells = dict(zip(kind.__code__.co_freevars, (c.cell_contents for c in kind.__closure__ or ())))
    if kind.__qualname__.startswith("number."):
        low, high = cells.get("low"), cells.get("high")
        bounds = [f"≥ {low:g}" if low not in (None, float("-inf")) else "", f"≤ {high:g}" if high not in (None, float("inf")) else ""]
        return "number" + (f" ({', '.join(b for b in bounds if b)})" if any(bounds) else "")
    if kind.__qualname__.startswith("choice."):
        return "one of " + ", ".join(f"`{a}`" for a in cells.get("allowed", ()))
    doc = inspect.getdoc(kind)
    if doc:
        return doc.splitlines()[0].replace("|", "\\|")
    return kind.__name__.strip("_").replace("_", " ")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def options_markdown() -> str:
    rows = []
    for module, option in all_options():
        default = "—" if option.default in (None, "", [], ()) else f"`{option.default}`"
        usage = f"`--{option.name}`" + (" (repeatable)" if option.multiple else "")
        rows.append(f"| {usage} | `{option.dest}` | {_cell(kind_name(option.kind))} | {_cell(default)} | "
                    f"{_cell(option.help)} | `{module}` |")
    return "\n".join([
        "# Options",
        "",
        "Generated from the options data in `speedbench_plugin` (each `Option` in the module named in the",
        "last column) when the documentation is built: this page cannot disagree with the code.",
        "",
        "A value is read from the command line, then the ini file (`pytest.ini`, `tox.ini`,",
        "`pyproject.toml`'s `[tool.pytest.ini_options]`: the ini key is the option's name with",
        "underscores, e.g. `speedbench_drafter = ngram:k=3`, one line per value for repeatable options),",
        "then a preset (`--speedbench-preset`), then the default. `—` means no default value: the help",
        "says what happens then. `pytest --help` prints the same list under \"speedbench\".",
        "",
        "| option | ini key | type | default | help | declared in |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ])


# --- the record ------------------------------------------------------------------------------

_UNITS = [  # (name pattern, unit): the naming convention the record follows
    (r"_us_per_output$", "µs of CPU per engine output"),
    (r"(^|_)tps($|_)", "tokens/s"),
    (r"_s(_rounds)?$|_s_|^wall_time", "seconds"),
    (r"(^|_)(rate|rates|efficiency|merge_rate|rel_diff)(_|$)", "fraction (0–1)"),
    (r"^acceptance_length|^abs_diff", "tokens per step"),
    (r"(^|_)(tokens|steps|chunks|drafts|num_|accepted|bound|gap|concurrency|rounds|turn|round)(_|$)|^num_|_per_pos$|histogram", "count"),
    (r"sha", "hex digest"),
]

_RECORD_PARTS = [
    ("case", record.CaseKey, "what was measured"),
    ("acceptance", record.Acceptance, "draft quality"),
    ("speed", record.Speed, "serving speed"),
    ("counters", record.Counters, "the engine's own counters, per source"),
    ("counters.per_request / counters.global", record.CounterSummary, "one counter source"),
    ("fidelity.<source>", metrics.FidelityCheck, "the stream against one counter source"),
    ("requests[]", record.RequestRow, "one request (question, turn, round)"),
    ("(top level)", record.Record, "the record itself"),
]


def unit_of(name: str, annotation: str) -> str:
    if annotation.startswith(("str", "bool", "dict", "Mapping", "DrafterSpec", "CaseKey", "Acceptance",
                              "Speed", "Counters", "CounterSummary", "tuple[str")):
        return ""
    for pattern, unit in _UNITS:
        if re.search(pattern, name):
            return unit
    return ""


def _field_comments(cls: type) -> dict[str, str]:
    comments: dict[str, str] = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^#]*#\s*(.*)$", line)
        if match:
            comments[match.group(1)] = match.group(2)
    return comments


def record_markdown() -> str:
    lines = [
        "# Record fields",
        "",
        (f"Generated from `speedbench_plugin/record.py` and `metrics.py` when the documentation is built"
         f" (record schema {record.SCHEMA_VERSION}). The JSON form sits in `benchmarks[*].extra_info.speedbench`"
         " of every results file. What each figure means and how it is computed: [Metrics](../concepts/metrics.md)."),
        "",
        "Units follow the names: `_s` seconds, `tps` tokens per second, `_us_per_output` microseconds of",
        "CPU per engine output, `rate`/`efficiency` a fraction, `acceptance_length` tokens per step,",
        "token/step/chunk/draft names counts. `None` (JSON `null`) means the source could not give the",
        "figure; the record's `engine.missing` and `counters.note` say why.",
        "",
    ]
    for part, cls, what in _RECORD_PARTS:
        hints = typing.get_type_hints(cls)
        comments = _field_comments(cls)
        lines += [f"## `{part}`: {what}", "", "| field | type | unit | note |", "|---|---|---|---|"]
        for field in dataclasses.fields(cls):
            annotation = _type_text(hints.get(field.name, field.type))
            name = "global" if field.name == "global_" else field.name
            lines.append(f"| `{name}` | `{_cell(annotation)}` | {unit_of(field.name, annotation)} | "
                         f"{_cell(comments.get(field.name, ''))} |")
        lines.append("")
    return "\n".join(lines)


def _type_text(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else str(annotation)
    return re.sub(r"\b(?:typing|collections\.abc|speedbench_plugin\.[\w.]+)\.", "", text).replace("<class '", "").replace("'>", "")


# --- figures ---------------------------------------------------------------------------------

def figures_markdown(docs_dir: Path) -> str:
    """The pictures `make docs-figures` rendered, or how to render them (the build does not need them)."""
    folder = docs_dir / FIGURES_DIR
    report = folder / "report.html"
    pareto = sorted((folder / "throughput").glob("pareto_*.png")) if folder.is_dir() else []
    lines = [
        "# Figures",
        "",
        "Rendered by `make docs-figures` (which `make docs` runs) from a small run of the **fake engine**",
        "(synthetic, no model: the numbers show what the outputs look like and measure nothing): a",
        "qualitative run of `none` and `ngram:k=3` on four categories, and a throughput sweep over",
        "concurrency 1, 2, 4, 8. Real runs write the same files into their run folder (see",
        "[Reading the results](concepts/results.md)).",
        "",
    ]
    if not report.exists() and not pareto:
        return "\n".join(lines + ["Not rendered in this build: run `make docs-figures`, then build again.", ""])
    if report.exists():
        lines += ["## The HTML report", "", (f"[Open the report of the fake run]({FIGURES_DIR}/report.html): one "
                  "self-contained file, as `--speedbench-report run` writes it."), ""]
    for png in pareto:
        relative = png.relative_to(docs_dir).as_posix()
        lines += [f"## Pareto front: `{png.name}`", "", (f"![Output TPS against user TPS across concurrency, "
                  f"SD on and off]({relative})"), ""]
    return "\n".join(lines)


# --- mkdocs hooks ------------------------------------------------------------------------------

def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    pages = ((OPTIONS_PAGE, options_markdown()), (RECORD_PAGE, record_markdown()),
             (FIGURES_PAGE, figures_markdown(Path(config["docs_dir"]))))
    for page, content in pages:
        files.append(File.generated(config, page, content=content))
    return files
