"""Starting an engine for a drafter, shared by the session fixture and the cases that start their own.

It lives outside the plugin module so that case code (cross-engine, throughput) can start an
engine without importing a pytest plugin; a failure fails the calling test with the reason.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from speedbench_plugin.settings import ENGINE_START_TIMEOUT, Settings

if TYPE_CHECKING:
    from speedbench_plugin.drafters import DrafterSpec
    from speedbench_plugin.runner import EngineHost

__all__ = ["resolve_drafter", "start_engine"]


def resolve_drafter(drafter: DrafterSpec) -> DrafterSpec:
    """Give an embedded ``draft`` drafter its model path (first ``layers`` layers of SmolLM2)."""
    if drafter.method == "draft" and not drafter.model:
        from speedbench_plugin.drafters import DrafterSpec
        from speedbench_plugin.models import DEFAULT_DRAFT_LAYERS, draft_model

        path = draft_model(drafter.option("layers", DEFAULT_DRAFT_LAYERS) or DEFAULT_DRAFT_LAYERS)
        return DrafterSpec(drafter.method, drafter.k, str(path), drafter.options)
    return drafter


def start_engine(settings: Settings, model: str, drafter: DrafterSpec, engine_args: dict[str, Any] | None = None) -> EngineHost:
    """Create and start an engine for ``drafter``; a failure fails the calling test with the reason."""
    from speedbench_plugin.engines import EngineConfig, EngineError, UnknownEngine, create_engine
    from speedbench_plugin.models import ModelUnavailable
    from speedbench_plugin.runner import EngineHost, EngineHung

    try:
        config = EngineConfig(model, resolve_drafter(drafter), dict(settings.engine_args if engine_args is None else engine_args),
                              settings.endpoint)
        engine = create_engine(settings.engine, config)
    except UnknownEngine as exc:
        pytest.exit(str(exc), returncode=4)
    except (EngineError, ModelUnavailable, ValueError) as exc:  # rejected before starting
        pytest.fail(f"engine {settings.engine} with drafter {drafter}: {exc}", pytrace=False)
    host = EngineHost(engine)
    try:
        host.start(timeout=settings.engine_start_timeout)
    except EngineHung as exc:
        host.close(timeout=10)
        pytest.fail(f"engine {settings.engine} with drafter {drafter} failed to start: {exc} "
                    f"(--{ENGINE_START_TIMEOUT.name})", pytrace=False)
    except Exception as exc:  # noqa: BLE001 - every case of this engine errors with this message
        host.close(timeout=30)
        pytest.fail(f"engine {settings.engine} with drafter {drafter} failed to start: {exc}", pytrace=False)
    except BaseException:  # an interrupt during start: the engine's processes must not outlive pytest
        host.close(timeout=30)
        raise
    return host
