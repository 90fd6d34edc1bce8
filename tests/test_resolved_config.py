"""The engine configuration as each engine resolved it, read from answers of the documented shapes
(vLLM's VllmConfig attributes, SGLang's server info, TensorRT-LLM's LLM.args, an OpenAI server's
/v1/models). The live vLLM read-back is in test_engine_vllm.py."""
from __future__ import annotations

import enum
from types import SimpleNamespace

from speedbench_plugin.engines import trtllm, vllm, wire


class Mode(enum.IntEnum):  # vLLM's CompilationMode is an IntEnum
    NONE = 0
    VLLM_COMPILE = 3


def _vllm_config(**compilation: object) -> SimpleNamespace:
    return SimpleNamespace(
        speculative_config=SimpleNamespace(method="ngram", num_speculative_tokens=3, prompt_lookup_min=1,
                                           prompt_lookup_max=3, draft_tensor_parallel_size=1, model=None),
        scheduler_config=SimpleNamespace(async_scheduling=False, stream_interval=1, max_num_seqs=256,
                                         max_num_batched_tokens=8192),
        model_config=SimpleNamespace(enforce_eager=True, dtype=SimpleNamespace(), max_model_len=8192),
        cache_config=SimpleNamespace(enable_prefix_caching=False),
        compilation_config=SimpleNamespace(**compilation),
        parallel_config=SimpleNamespace(tensor_parallel_size=1),
    )


def test_vllm_reads_every_setting_and_names_enums() -> None:
    got = vllm.resolved_config(_vllm_config(mode=Mode.VLLM_COMPILE, cudagraph_mode=None))["comparable"]
    assert got["speculative.method"] == "ngram" and got["speculative.prompt_lookup_min"] == 1
    assert got["compilation.mode"] == "VLLM_COMPILE" and "compilation.level" not in got  # absent in this release
    assert got["scheduler.async_scheduling"] is False and got["scheduler.max_num_batched_tokens"] == 8192
    assert isinstance(got["model.dtype"], str)


def test_vllm_before_compilation_modes_reports_the_level() -> None:
    got = vllm.resolved_config(_vllm_config(level=0))["comparable"]
    assert got["compilation.level"] == 0 and "compilation.mode" not in got


def test_vllm_without_a_drafter_says_none() -> None:
    config = _vllm_config(mode=Mode.NONE)
    config.speculative_config = None
    got = vllm.resolved_config(config)["comparable"]
    assert got["speculative.method"] is None and got["speculative.prompt_lookup_min"] is None
    assert got["compilation.mode"] == "NONE"


SGLANG_INFO = {  # /get_server_info: ServerArgs fields plus runtime state
    "model_path": "/m", "speculative_algorithm": "NGRAM", "speculative_num_draft_tokens": 4,
    "speculative_ngram_min_match_window_size": 1, "speculative_ngram_max_match_window_size": 12,
    "disable_overlap_schedule": True, "stream_interval": 1, "disable_cuda_graph": False, "enable_torch_compile": False,
    "max_running_requests": 48, "chunked_prefill_size": 8192, "dtype": "auto", "context_length": None,
    "disable_radix_cache": True, "tp_size": 1, "version": "0.5.4", "speculative_draft_model_path": None,
}


def test_sglang_server_info() -> None:
    got = wire.sglang_resolved_config(SGLANG_INFO, "sglang: /get_server_info")
    assert got["comparable"]["speculative_ngram_min_match_window_size"] == 1
    assert got["comparable"]["disable_overlap_schedule"] is True and got["comparable"]["tp_size"] == 1
    assert "model_path" not in got["comparable"] and got["informational"]["version"] == "0.5.4"
    older = {k: v for k, v in SGLANG_INFO.items() if not k.startswith("speculative_ngram")}
    assert "speculative_ngram_min_match_window_size" not in wire.sglang_resolved_config(older, "s")["comparable"]


def test_trtllm_llm_args() -> None:
    args = {"speculative_config": {"decoding_type": "NGram", "max_draft_len": 3, "max_matching_ngram_size": 2,
                                   "speculative_model_dir": None},
            "disable_overlap_scheduler": True, "max_batch_size": 2048, "max_num_tokens": 8192, "dtype": "auto",
            "max_seq_len": None, "kv_cache_config": {"enable_block_reuse": True}, "cuda_graph_config": None,
            "tensor_parallel_size": 1}
    got = trtllm.resolved_config(args)["comparable"]
    assert got["speculative.max_matching_ngram_size"] == 2 and got["scheduler.disable_overlap_scheduler"] is True
    assert got["cache.enable_block_reuse"] is True and got["compilation.cuda_graph_config"] is None
    assert "compilation.torch_compile_config" not in got  # a release without the field
    assert trtllm.resolved_config(None)["comparable"] is None


def test_openai_server_models() -> None:
    models = {"object": "list", "data": [{"id": "other", "max_model_len": 4096},
                                         {"id": "m", "root": "/models/m", "owned_by": "vllm", "max_model_len": 8192}]}
    got = wire.served_model_config(models, "m", "http://h/v1/models")
    assert got["comparable"] == {"model.max_model_len": 8192} and got["informational"]["root"] == "/models/m"
    assert wire.served_model_config({"data": [{"id": "m"}]}, "m", "s")["comparable"] == {}
