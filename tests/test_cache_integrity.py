"""Cached files against the sha256 their builder recorded: truncation, flipped bytes, missing files,
files from before checksums, and cached models rebuilt offline when they are damaged."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin import cache
from speedbench_plugin.cache import (
    INTEGRITY_FILE,
    CacheIntegrityError,
    record_files,
    sha256_file,
    verify_files,
)

REPO = Path(__file__).resolve().parents[1]
REBUILD = "python -m speedbench_plugin.data build-something"


def flip_byte(path: Path, offset: int | None = None, keep_mtime: bool = False) -> None:
    """Change one byte in place (same size), as bit rot or a bad copy would."""
    stat = path.stat()
    at = stat.st_size // 2 if offset is None else offset
    with path.open("r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(bytes([byte[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def truncate(path: Path) -> None:
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "split"
    root.mkdir()
    (root / "a.jsonl").write_text('{"question_id": "a"}\n' * 100)
    (root / "b.parquet").write_bytes(os.urandom(4096))
    record_files(root, ["a.jsonl", "b.parquet"])
    return root


def test_intact_files_pass(folder: Path) -> None:
    assert verify_files(folder, None, REBUILD) == []
    listed = json.loads((folder / INTEGRITY_FILE).read_text())["files"]
    assert listed["b.parquet"]["sha256"] == sha256_file(folder / "b.parquet")
    assert listed["b.parquet"]["size"] == 4096 and listed["b.parquet"]["recorded"] == "written"


def test_truncated_file_is_named_with_its_size_and_the_rebuild_command(folder: Path) -> None:
    truncate(folder / "b.parquet")
    with pytest.raises(CacheIntegrityError) as err:
        verify_files(folder, ["b.parquet"], REBUILD)
    assert str(err.value) == (f"{folder / 'b.parquet'}: 2048 bytes where 4096 were written (truncated or "
                              f"overwritten); the cached copy is corrupted or incomplete. Rebuild it with `{REBUILD}`")


def test_changed_byte_is_caught_by_sha256(folder: Path) -> None:
    verify_files(folder, None, REBUILD)  # hashed (and remembered) once
    flip_byte(folder / "a.jsonl")  # a new mtime: hashed again
    with pytest.raises(CacheIntegrityError, match=r"a\.jsonl: sha256 .* does not match .* recorded when it was "
                                                  r"written.*Rebuild it with"):
        verify_files(folder, ["a.jsonl"], REBUILD)


def test_missing_file_and_unreadable_checksum_list(folder: Path) -> None:
    (folder / "a.jsonl").unlink()
    with pytest.raises(CacheIntegrityError, match=r"a\.jsonl: the file is missing"):
        verify_files(folder, None, REBUILD)
    (folder / INTEGRITY_FILE).write_text("{not json")
    with pytest.raises(CacheIntegrityError, match=r"speedbench-files\.json: the checksum list is unreadable"):
        verify_files(folder, ["b.parquet"], REBUILD)


def test_files_built_before_checksums_are_recorded_once_then_held(folder: Path) -> None:
    (folder / INTEGRITY_FILE).unlink()
    assert verify_files(folder, None, REBUILD) == ["a.jsonl", "b.parquet"]
    assert json.loads((folder / INTEGRITY_FILE).read_text())["files"]["a.jsonl"]["recorded"] == "first-check"
    assert verify_files(folder, None, REBUILD) == []
    flip_byte(folder / "a.jsonl")
    with pytest.raises(CacheIntegrityError):
        verify_files(folder, None, REBUILD)


def test_each_file_is_hashed_once_per_process(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "_HASHED", {})
    monkeypatch.setattr(cache, "sha256_file", lambda path: calls.append(Path(path).name) or real(path))
    for _ in range(3):
        verify_files(folder, None, REBUILD)
    assert sorted(calls) == ["a.jsonl", "b.parquet"]


def test_silent_corruption_is_caught_by_the_next_process(folder: Path) -> None:
    """A change that keeps size and mtime (bit rot) escapes the per-process memo, not a new session."""
    verify_files(folder, None, REBUILD)
    flip_byte(folder / "b.parquet", keep_mtime=True)
    script = textwrap.dedent(f"""
        from speedbench_plugin.cache import CacheIntegrityError, verify_files
        try:
            verify_files({str(folder)!r}, None, {REBUILD!r})
        except CacheIntegrityError as exc:
            print(exc)
            raise SystemExit(3)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 3, done.stderr
    assert "b.parquet: sha256" in done.stdout


# ---- cached models ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_models() -> dict[str, Path]:
    from speedbench_plugin.models import ModelUnavailable, embedded_model, tiny_model

    try:
        return {"embedded": embedded_model(), "tiny": tiny_model()}
    except ModelUnavailable as exc:
        pytest.skip(f"embedded model unavailable: {exc}")


@pytest.fixture
def model_cache(real_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache holding copies of the embedded and tiny models. The embedded weights are
    hard links (270 MB; no test writes to them); every other file is a real copy."""
    root = tmp_path / "cache"
    for source in real_models.values():
        target = root / "models" / source.name
        target.mkdir(parents=True)
        for path in source.iterdir():
            if path.suffix == ".safetensors" and source == real_models["embedded"]:
                os.link(path, target / path.name)
            elif path.is_file():
                shutil.copy2(path, target / path.name)
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(root))
    return root / "models"


def test_truncated_model_is_rebuilt_offline_to_the_same_weights(
    model_cache: Path, real_models: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    from speedbench_plugin.identity import local_identity
    from speedbench_plugin.models import tiny_model

    tiny = model_cache / real_models["tiny"].name
    assert tiny_model() == tiny  # intact: used as it is
    before = local_identity(tiny).sha
    truncate(tiny / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        assert tiny_model() == tiny
    assert f"{tiny / 'model.safetensors'}: " in caplog.text and "Rebuilding it now" in caplog.text
    assert verify_files(tiny, None, "") == []
    assert local_identity(tiny).sha == before  # the build is reproducible
    assert sorted(p.name for p in model_cache.iterdir() if ".build-" in p.name or ".old-" in p.name) == []


def test_damaged_model_that_cannot_be_rebuilt_names_file_and_command(
    model_cache: Path, real_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from speedbench_plugin import models

    config = model_cache / real_models["embedded"].name / "config.json"
    models.embedded_model()  # first check: records the copy's checksums
    flip_byte(config, offset=2)
    monkeypatch.setattr(models, "GGUF_PACKAGE", "speedbench_no_such_wheel")  # a machine without the wheel
    with pytest.raises(models.ModelUnavailable) as err:
        models.embedded_model()
    message = str(err.value)
    assert f"{config}: sha256" in message and "Rebuild it with `python -m speedbench_plugin.models`" in message
    assert "cannot be rebuilt here" in message and "speedbench-no-such-wheel" in message
    assert models.main([]) == 1
    assert f"error: {config}: sha256" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_finding_one_damaged_model_rebuild_it_once(model_cache: Path,
                                                                   real_models: dict[str, Path]) -> None:
    tiny = model_cache / real_models["tiny"].name
    expected = sha256_file(tiny / "model.safetensors")
    truncate(tiny / "model.safetensors")
    script = "from speedbench_plugin.models import tiny_model; print(tiny_model())"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert [out.strip() for out, _ in outputs] == [str(tiny)] * 2
    assert sum("Rebuilding it now" in err for _, err in outputs) == 1  # the other waited, then found it sound
    assert sha256_file(tiny / "model.safetensors") == expected


def test_read_only_cache_is_checked_not_written_and_damage_there_is_a_clear_error(
    real_models: dict[str, Path], tmpfs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from speedbench_plugin.models import ModelUnavailable, tiny_model

    source = real_models["tiny"]
    sound, damaged = tmpfs.mount("48m"), tmpfs.mount("48m")
    for root in (sound, damaged):
        shutil.copytree(source, root / "models" / source.name)
    truncate(damaged / "models" / source.name / "model.safetensors")
    tmpfs.read_only(sound)
    tmpfs.read_only(damaged)
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(sound))
    assert tiny_model() == sound / "models" / source.name
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(damaged))
    with pytest.raises(ModelUnavailable) as err:
        tiny_model()
    message = str(err.value)
    assert message.startswith(f"{damaged / 'models' / source.name / 'model.safetensors'}: ")
    assert "Rebuild it with `python -m speedbench_plugin.models --tiny`; it cannot be rebuilt here" in message
    assert "Read-only file system" in message
