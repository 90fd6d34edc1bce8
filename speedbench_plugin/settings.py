"""The session's settings, read and validated once from options and ini."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin import options
from speedbench_plugin.drafters import DrafterSpec, DrafterSpecError

DEFAULT_DRAFTERS = ("none", "ngram:k=3", "draft:k=3")


def _positive_ints(text: str, name: str) -> list[int]:
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise pytest.UsageError(f"--{name}: {part!r} is not a positive integer") from None
        if value < 1:
            raise pytest.UsageError(f"--{name}: {value} is not a positive integer")
        values.append(value)
    if not values:
        raise pytest.UsageError(f"--{name}: give at least one positive integer")
    return values


# Preset keys that differ from option names; lists that options take as comma lists.
PRESET_KEYS = {"drafter": "drafters", "engine_args": "engine_args"}
_COMMA_LISTS = {"speedbench-concurrency", "speedbench-categories"}


def _preset(name: str | None) -> dict[str, Any]:
    """A preset's values become defaults: the command line and ini still win."""
    if not name:
        return {}
    from speedbench_plugin.presets import PresetError, load_preset

    try:
        return load_preset(name)
    except PresetError as exc:
        raise pytest.UsageError(str(exc)) from None


def parse_engine_args(items: list[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"--speedbench-engine-args {item!r}: expected KEY=VALUE")
        try:
            parsed[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key.strip()] = raw
    return parsed


@dataclass(frozen=True)
class Settings:
    engine: str
    model: str | None
    drafters: tuple[DrafterSpec, ...]
    concurrency: tuple[int, ...]
    num_requests: int | None
    max_tokens: int
    temperature: float
    engine_args: dict[str, Any] = field(default_factory=dict)
    rounds: int = 1
    categories: tuple[str, ...] | None = None
    dataset: str | None = None
    endpoint: str | None = None
    results_json: str | None = None
    progress: str = "auto"
    cross_engine: str | None = None

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        preset = _preset(options.get(config, "speedbench-preset"))

        def get(name: str) -> Any:
            key = name.removeprefix("speedbench-").replace("-", "_")
            value = preset.get(PRESET_KEYS.get(key, key))
            if isinstance(value, list) and name in _COMMA_LISTS:
                value = ",".join(str(v) for v in value)
            elif isinstance(value, dict):
                value = [f"{k}={json.dumps(v)}" for k, v in value.items()]
            elif value is not None and not isinstance(value, list):
                value = str(value)
            return options.get(config, name, value)

        try:
            drafters = tuple(DrafterSpec.parse(s) for s in (get("speedbench-drafter") or DEFAULT_DRAFTERS))
        except DrafterSpecError as exc:
            raise pytest.UsageError(str(exc)) from None
        if len({d.id for d in drafters}) != len(drafters):
            raise pytest.UsageError("--speedbench-drafter: the same drafter is given twice")
        model = get("speedbench-model")
        if model and not Path(model).is_dir():
            raise pytest.UsageError(f"--speedbench-model {model!r}: no such model directory")
        for drafter in drafters:
            if drafter.model and not Path(drafter.model).is_dir():
                raise pytest.UsageError(f"--speedbench-drafter {drafter}: no such model directory {drafter.model!r}")
        num_requests = get("speedbench-num-requests")
        temperature = get("speedbench-temperature")
        try:
            temperature_value = float(temperature)
        except ValueError:
            raise pytest.UsageError(f"--speedbench-temperature {temperature!r}: not a number") from None
        if temperature_value < 0:
            raise pytest.UsageError(f"--speedbench-temperature {temperature!r}: must not be negative")
        categories = get("speedbench-categories")
        progress = str(get("speedbench-progress")).lower()
        if progress not in ("auto", "on", "off"):
            raise pytest.UsageError(f"--speedbench-progress {progress!r}: use auto, on or off")
        return cls(
            engine=str(get("speedbench-engine")),
            model=model,
            drafters=drafters,
            concurrency=tuple(_positive_ints(get("speedbench-concurrency"), "speedbench-concurrency")),
            num_requests=_positive_ints(num_requests, "speedbench-num-requests")[0] if num_requests else None,
            max_tokens=_positive_ints(get("speedbench-max-tokens"), "speedbench-max-tokens")[0],
            temperature=temperature_value,
            engine_args=parse_engine_args(get("speedbench-engine-args")),
            rounds=_positive_ints(get("speedbench-rounds"), "speedbench-rounds")[0],
            categories=tuple(c.strip() for c in categories.split(",") if c.strip()) if categories else None,
            dataset=get("speedbench-dataset"),
            endpoint=get("speedbench-endpoint"),
            results_json=get("speedbench-json"),
            progress=progress,
            cross_engine=get("speedbench-cross-engine"),
        )
