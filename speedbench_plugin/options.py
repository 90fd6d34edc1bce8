"""Options as data: each option is declared once with its parser, added to pytest's command line and
mirrored as an ini setting (the same name with underscores). A value is looked up on the command
line, then in the ini file, then in a preset, then the default, and parsed by the option's ``kind``
into a typed value; a bad value is a usage error naming the option.

The suite's plugins (the lead plugin, the gate, the throughput sweep) each declare a tuple of
:class:`Option` and use :func:`add_options` and :func:`value`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

Parser = Callable[[Any, str], Any]  # (raw value, option name) -> typed value


def _fail(name: str, raw: Any, why: str) -> pytest.UsageError:
    return pytest.UsageError(f"--{name} {raw!r}: {why}")


def _items(raw: Any) -> list[Any]:
    """A comma list from the command line or ini, or a list from a preset."""
    if isinstance(raw, (list, tuple)):
        return [item for item in raw if str(item).strip()]
    return [part.strip() for part in str(raw).split(",") if part.strip()]


# --- kinds -------------------------------------------------------------------------------------


def text(raw: Any, name: str) -> str | None:
    return None if raw is None else str(raw)


def positive_int(raw: Any, name: str) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise _fail(name, raw, "not a positive integer") from None
    if value < 1:
        raise _fail(name, raw, "not a positive integer")
    return value


def optional_positive_int(raw: Any, name: str) -> int | None:
    return None if raw is None or str(raw).strip() == "" else positive_int(raw, name)


def positive_ints(raw: Any, name: str) -> tuple[int, ...]:
    """``"1,2,4"`` or a preset list -> (1, 2, 4), duplicates dropped, order kept."""
    values: list[int] = []
    for item in _items(raw):
        value = positive_int(item, name)
        if value not in values:
            values.append(value)
    if not values:
        raise _fail(name, raw, "give at least one positive integer")
    return tuple(values)


def token_counts(raw: Any, name: str) -> tuple[int, ...]:
    """Like :func:`positive_ints`, with ``1k`` meaning 1024."""
    values: list[int] = []
    for item in _items(raw):
        digits, scale = (str(item)[:-1], 1024) if str(item).lower().endswith("k") else (str(item), 1)
        value = positive_int(digits, name) * scale
        if value not in values:
            values.append(value)
    if not values:
        raise _fail(name, raw, "give at least one positive integer")
    return tuple(values)


def optional_token_counts(raw: Any, name: str) -> tuple[int, ...] | None:
    return None if raw is None or str(raw).strip() == "" else token_counts(raw, name)


def optional_positive_ints(raw: Any, name: str) -> tuple[int, ...] | None:
    return None if raw is None or str(raw).strip() == "" else positive_ints(raw, name)


def words(raw: Any, name: str) -> tuple[str, ...] | None:
    """A comma list of names; None when not given."""
    if raw is None:
        return None
    values = tuple(str(item).strip() for item in _items(raw))
    return values or None


def number(low: float = -math.inf, high: float = math.inf) -> Parser:
    def parse(raw: Any, name: str) -> float:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise _fail(name, raw, "not a number") from None
        if math.isnan(value) or not low <= value <= high:
            raise _fail(name, raw, f"must be between {low:g} and {high:g}")
        return value

    return parse


def flag(raw: Any, name: str) -> bool:
    if isinstance(raw, bool):
        return raw
    textual = str(raw).strip().lower()
    if textual in ("1", "true", "yes", "on"):
        return True
    if textual in ("0", "false", "no", "off", ""):
        return False
    raise _fail(name, raw, "use true or false")


def choice(*allowed: str) -> Parser:
    def parse(raw: Any, name: str) -> str:
        value = str(raw).strip().lower()
        if value not in allowed:
            raise _fail(name, raw, f"use {', '.join(allowed[:-1])} or {allowed[-1]}" if len(allowed) > 1 else f"use {allowed[0]}")
        return value

    return parse


def number_pair(raw: Any, name: str) -> tuple[float, float]:
    parts = _items(raw)
    if len(parts) != 2:
        raise _fail(name, raw, "expected two numbers A,B")
    first, second = (number(0.0)(part, name) for part in parts)
    return first, second


def key_values(raw: Any, name: str) -> dict[str, Any]:
    """``KEY=VALUE`` items (values parsed as JSON where they are JSON), or a preset's mapping."""
    if isinstance(raw, Mapping):
        return dict(raw)
    parsed: dict[str, Any] = {}
    for item in raw or []:
        if isinstance(item, Mapping):
            parsed.update(item)
            continue
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise _fail(name, item, "expected KEY=VALUE")
        try:
            parsed[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key.strip()] = value
    return parsed


# --- the option --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    name: str  # without the leading dashes; the ini key is the same with underscores
    help: str
    default: Any = None
    kind: Parser = text
    multiple: bool = False  # repeatable on the command line, a line list in the ini file
    is_flag: bool = False  # takes no value on the command line
    preset_key: str | None = None  # where a preset sets it (None: presets cannot)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


def add_options(parser: pytest.Parser, options: Sequence[Option]) -> None:
    group = parser.getgroup("speedbench", "speedbench: speculative decoding benchmarks")
    for option in options:
        if option.is_flag:
            group.addoption(f"--{option.name}", action="store_true", dest=option.dest, default=None, help=option.help)
        else:
            action = "append" if option.multiple else "store"
            group.addoption(f"--{option.name}", action=action, dest=option.dest, default=None, help=option.help)
        if option.multiple:
            parser.addini(option.dest, option.help + " (ini)", type="linelist")
        else:
            parser.addini(option.dest, option.help + " (ini)", type="string")


def raw_value(config: pytest.Config, option: Option, preset: Mapping[str, Any] | None = None) -> Any:
    """Command line, then ini, then the preset, then the default; repeatable options give lists
    (``;`` also separates items, for values set through one environment variable)."""
    value = config.getoption(option.dest)
    if value is None:
        ini = config.getini(option.dest)
        value = ini if ini else None
    if value is None and preset and option.preset_key:
        value = preset.get(option.preset_key)
    if value is None:
        value = option.default
    if option.multiple and value is not None and not isinstance(value, Mapping):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        value = []
        for item in items:
            if isinstance(item, str):
                value += [part.strip() for part in item.split(";") if part.strip()]
            else:
                value.append(item)
    return value


def is_set(config: pytest.Config, option: Option, preset: Mapping[str, Any] | None = None) -> bool:
    """Whether the user chose this option's value (command line, ini or preset), not the default."""
    return (config.getoption(option.dest) is not None or bool(config.getini(option.dest))
            or bool(preset and option.preset_key and preset.get(option.preset_key) is not None))


def value(config: pytest.Config, option: Option, preset: Mapping[str, Any] | None = None) -> Any:
    """The option's typed value."""
    return option.kind(raw_value(config, option, preset), option.name)
