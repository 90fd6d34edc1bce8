"""Presets: named run configurations (``--speedbench-preset NAME`` or a YAML file).

A preset fixes what SPEED-Bench's tables vary: engine, target model, drafters, concurrency,
engine arguments, output length and sampling. The bundled ones live in
``speedbench_plugin/presets/*.yaml``: the paper's configurations (SPEED-Bench Table 1: batch 32,
draft length 3, temperature 0) and one per engine for the embedded CPU model.

Model paths may use ``${VAR}`` or ``${VAR:-default}``: checkpoints of the paper's models are large
and live wherever the user downloaded them (``SPEEDBENCH_MODELS``). ``model: embedded`` means the
suite's embedded SmolLM2-135M-Instruct (returned as ``None``, the suite's default), and drafters
may use ``draft:k=3,layers=N`` for the derived draft models.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from speedbench_plugin.drafters import DrafterSpec, DrafterSpecError

PRESET_DIR = Path(__file__).with_name("presets")
KEYS: dict[str, type | tuple[type, ...]] = {
    "description": str,
    "source": str,
    "hardware": str,
    "engine": str,
    "model": str,
    "model_id": str,
    "drafters": list,
    "concurrency": (int, list),
    "max_tokens": int,
    "temperature": (int, float),
    "num_requests": int,
    "rounds": int,
    "dataset": str,
    "categories": list,
    "endpoint": str,
    "engine_args": dict,
    "notes": str,
}
REQUIRED = ("engine", "drafters")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class PresetError(ValueError):
    pass


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _expand(value: str, where: str) -> str:
    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found:
            return found
        if default is not None:
            return default
        raise PresetError(f"{where}: environment variable {name} is not set (used in {value!r})")

    return _VAR.sub(sub, value)


def _expand_all(obj: Any, where: str) -> Any:
    if isinstance(obj, str):
        return _expand(obj, where)
    if isinstance(obj, list):
        return [_expand_all(v, where) for v in obj]
    if isinstance(obj, dict):
        return {k: _expand_all(v, where) for k, v in obj.items()}
    return obj


def _locate(name_or_path: str) -> Path:
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not candidate.is_file():
            raise PresetError(f"--speedbench-preset {name_or_path!r}: no such file")
        return candidate
    bundled = PRESET_DIR / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise PresetError(
            f"--speedbench-preset {name_or_path!r} is not a bundled preset; known: {', '.join(available_presets())} "
            "(or give a path to a .yaml file)"
        )
    return bundled


def validate(raw: Any, where: str) -> dict[str, Any]:
    """Check a preset's keys and types; parse drafters; normalise concurrency to a list of ints."""
    if not isinstance(raw, dict):
        raise PresetError(f"{where}: a preset is a YAML mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise PresetError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(KEYS))}")
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise PresetError(f"{where}: missing required key(s) {', '.join(missing)}")
    for key, kind in KEYS.items():
        if key in raw and raw[key] is not None and not isinstance(raw[key], kind):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise PresetError(f"{where}: {key} must be {expected}, got {type(raw[key]).__name__}")
    preset = _expand_all(dict(raw), where)
    from speedbench_plugin.engines import available_engines

    known = available_engines()
    if known and preset["engine"] not in known:
        raise PresetError(f"{where}: engine {preset['engine']!r} is not registered; known: {', '.join(sorted(known))}")
    try:
        drafters = [DrafterSpec.parse(str(spec)) for spec in preset["drafters"]]
    except DrafterSpecError as exc:
        raise PresetError(f"{where}: {exc}") from None
    if not drafters:
        raise PresetError(f"{where}: drafters must list at least one drafter (use 'none' for the baseline)")
    concurrency = preset.get("concurrency", 1)
    concurrency = concurrency if isinstance(concurrency, list) else [concurrency]
    if not concurrency or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in concurrency):
        raise PresetError(f"{where}: concurrency must be a positive integer or a list of them")
    for key in ("max_tokens", "num_requests", "rounds"):
        if key in preset and (isinstance(preset[key], bool) or preset[key] < 1):
            raise PresetError(f"{where}: {key} must be a positive integer")
    if preset.get("temperature", 0) < 0:
        raise PresetError(f"{where}: temperature must not be negative")
    if preset["engine"] == "openai" and not preset.get("endpoint"):
        raise PresetError(f"{where}: engine openai needs an endpoint")
    preset["drafters"] = tuple(drafters)
    preset["concurrency"] = tuple(concurrency)
    preset["engine_args"] = dict(preset.get("engine_args") or {})
    if preset.get("model") == "embedded":
        preset["model"] = None
    return dict(preset)


def load_preset(name_or_path: str) -> dict[str, Any]:
    """A preset as a dict of typed values (drafters as DrafterSpec, concurrency as a tuple of ints),
    validated; ``name`` is the bundled name or the file's stem."""
    import yaml

    path = _locate(name_or_path)
    where = f"preset {path.stem!r} ({path})"
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PresetError(f"{where}: not valid YAML: {exc}") from None
    preset = validate(raw, where)
    preset["name"] = path.stem
    return preset
