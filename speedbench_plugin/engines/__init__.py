"""Engine registry: every engine is a module found through the ``speedbench.engines`` entry point
group, so third parties add engines without touching the suite."""
from __future__ import annotations

from importlib.metadata import entry_points

from speedbench_plugin.drafters import check_draft_vocab_supported
from speedbench_plugin.engines.base import Engine, EngineConfig, EngineError

GROUP = "speedbench.engines"


class UnknownEngine(LookupError):
    pass


def available_engines() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def engine_class(name: str) -> type[Engine]:
    known = available_engines()
    if name not in known:
        names = ", ".join(sorted(known)) or "none (is speedbench installed? `pip install -e .`)"
        raise UnknownEngine(f"--speedbench-engine {name!r} is not a known engine; known: {names}")
    cls = known[name].load()  # type: ignore[attr-defined]
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise UnknownEngine(f"entry point {name!r} in {GROUP} does not name an Engine subclass")
    return cls


def create_engine(name: str, config: EngineConfig) -> Engine:
    cls = engine_class(name)
    # vocab=N must be applied exactly or refused, never ignored by an engine that cannot prune.
    check_draft_vocab_supported(config.drafter, name, bool(getattr(cls, "draft_vocabulary", False)))
    return cls(config)


__all__ = ["Engine", "EngineConfig", "EngineError", "UnknownEngine", "available_engines", "create_engine", "engine_class"]
