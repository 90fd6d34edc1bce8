"""Command-line options, each mirrored as an ini setting (the command line wins)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class Option:
    name: str  # without the leading dashes; the ini key is the same with underscores
    help: str
    default: Any = None
    kind: Callable[[str], Any] = str
    multiple: bool = False

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("speedbench-engine", "engine name from the speedbench.engines registry", "vllm"),
    Option("speedbench-model", "target model: a Hugging Face model directory (default: embedded SmolLM2-135M)"),
    Option(
        "speedbench-drafter",
        "drafter spec, repeatable: none, ngram:k=3[,max=3,min=1], draft:k=3[,model=PATH,layers=N], "
        "eagle3:k=3,model=PATH, mtp:k=3",
        None,
        multiple=True,
    ),
    Option("speedbench-concurrency", "concurrent conversations, a comma list for sweeps", "1"),
    Option("speedbench-num-requests", "requests: qualitative, in total round-robin over categories; throughput, per cell", None),
    Option("speedbench-max-tokens", "output tokens per request", "128"),
    Option("speedbench-temperature", "sampling temperature (0 = greedy)", "0"),
    Option("speedbench-engine-args", "KEY=VALUE passed to the engine, repeatable (values parsed as JSON)", None, multiple=True),
    Option("speedbench-rounds", "measured rounds per case", "1"),
    Option("speedbench-categories", "comma list of qualitative categories to run (default all)"),
    Option("speedbench-dataset", "speed:qualitative, speed:throughput_1k.. or a .jsonl/.parquet path"),
    Option("speedbench-endpoint", "URL of an OpenAI-compatible server (engine openai)"),
    Option("speedbench-preset", "a preset name or YAML file (engine, model, drafters, args)"),
    Option("speedbench-json", "also write the suite's own results JSON here (atomic)"),
    Option("speedbench-cross-engine", "a second engine to run the same prompts on (test_cross_engine)"),
    Option("speedbench-progress", "progress bars: auto, on or off", "auto"),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("speedbench", "speedbench: speculative decoding benchmarks")
    for option in OPTIONS:
        action = "append" if option.multiple else "store"
        group.addoption(f"--{option.name}", action=action, dest=option.dest, default=None, help=option.help)
        parser.addini(option.dest, option.help + " (ini)", type="linelist" if option.multiple else "string")


def get(config: pytest.Config, name: str, fallback: Any = None) -> Any:
    """The option's value: command line, then ini, then ``fallback`` (a preset's), then default.
    Repeatable options give lists."""
    option = next(o for o in OPTIONS if o.name == name)
    value = config.getoption(option.dest)
    if value is None:
        ini = config.getini(option.dest)
        value = ini if ini else None
    if value is None:
        value = fallback
    if value is None:
        value = option.default
    if option.multiple:
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        return [part.strip() for item in items for part in str(item).split(";") if part.strip()]
    return value
