from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def tiny_model_dir() -> str:
    """A 2-layer random Llama with the embedded tokenizer (built into the cache on first use)."""
    from speedbench_plugin.models import tiny_model

    return str(tiny_model())


@pytest.fixture(scope="session")
def embedded_model_dir() -> str:
    from speedbench_plugin.models import embedded_model

    return str(embedded_model())
