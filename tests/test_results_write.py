"""The atomic writers against real faults: a read-only mount, a full filesystem, a file-size limit,
a path under a file, and several processes writing one file at once."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin.cache import ResultsWriteError, atomic_write_bytes, atomic_write_json, ensure_writable

REPO = Path(__file__).resolve().parents[1]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_read_only_filesystem_names_the_path_and_keeps_the_old_file(tmpfs: Any) -> None:
    folder = tmpfs.mount("64k")
    target = folder / "results.json"
    atomic_write_json(target, {"run": 1})
    tmpfs.read_only(folder)
    with pytest.raises(ResultsWriteError) as err:
        atomic_write_json(target, {"run": 2})
    message = str(err.value)
    assert str(target) in message and "Read-only file system" in message
    assert "its previous content is unchanged" in message
    assert json.loads(target.read_text()) == {"run": 1}
    with pytest.raises(ResultsWriteError, match=r"new\.json: Read-only file system.*no file was created"):
        atomic_write_json(folder / "new.json", {})
    with pytest.raises(ResultsWriteError, match=r"run/results\.json: Read-only file system"):
        ensure_writable(folder / "run" / "results.json")  # the check a session can make before it starts
    assert sorted(p.name for p in folder.iterdir()) == ["results.json"]


def test_full_filesystem_leaves_nothing_half_written(tmpfs: Any) -> None:
    folder = tmpfs.mount("64k")
    target = folder / "results.json"
    atomic_write_json(target, {"run": 1})
    with pytest.raises(ResultsWriteError) as err:
        atomic_write_bytes(target, b"x" * 256 * 1024)  # four times the filesystem
    assert str(target) in str(err.value) and "No space left on device" in str(err.value)
    assert "disk or quota is full" in str(err.value)
    assert json.loads(target.read_text()) == {"run": 1}
    assert _leftovers(folder) == []


def test_file_size_limit_is_a_clear_error(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes a real write fail half way (EFBIG), with no mount needed."""
    target = tmp_path / "results.json"
    target.write_text('{"run": 1}\n')
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from speedbench_plugin.cache import ResultsWriteError, atomic_write_bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        try:
            atomic_write_bytes({str(target)!r}, b"x" * (1 << 20))
        except ResultsWriteError as exc:
            print(exc)
            sys.exit(3)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 3, done.stderr
    assert f"cannot write {target}: File too large" in done.stdout
    assert target.read_text() == '{"run": 1}\n'
    assert _leftovers(tmp_path) == []


def test_path_under_a_file_and_a_folder_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(ResultsWriteError, match=r"results/run1/results\.json: (Not a directory|File exists)"):
        atomic_write_json(blocker / "run1" / "results.json", {})
    with pytest.raises(ResultsWriteError, match=r"results/run1/results\.json: (Not a directory|File exists)"):
        ensure_writable(blocker / "run1" / "results.json")
    ensure_writable(tmp_path / "fine" / "results.json")
    assert list((tmp_path / "fine").iterdir()) == []  # the probe is gone
    folder = tmp_path / "taken.json"
    folder.mkdir()
    with pytest.raises(ResultsWriteError, match=r"taken\.json: Is a directory"):
        atomic_write_json(folder, {})
    assert _leftovers(tmp_path) == []


def test_error_survives_pickling_for_xdist_workers(tmp_path: Path) -> None:
    error = ResultsWriteError(tmp_path / "r.json", "No space left on device", 28)
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.errno == 28 and isinstance(again, OSError)


WRITER = textwrap.dedent("""
    import hashlib, json, sys
    from speedbench_plugin.cache import atomic_write_json
    path, writer, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for n in range(rounds):
        blob = f"{writer}-{n}-" * 40000  # ~400 kB: many write() calls each
        atomic_write_json(path, {"writer": writer, "n": n, "blob": blob,
                                 "sha": hashlib.sha256(blob.encode()).hexdigest()})
""")

READER = textwrap.dedent("""
    import hashlib, json, os, sys, time
    path, stop = sys.argv[1], sys.argv[2]
    reads = bad = 0
    while not os.path.exists(stop):
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            continue
        reads += 1
        try:
            doc = json.loads(text)
            ok = hashlib.sha256(doc["blob"].encode()).hexdigest() == doc["sha"]
            ok = ok and doc["blob"].startswith(f"{doc['writer']}-{doc['n']}-")
        except (ValueError, KeyError):
            ok = False
        bad += not ok
    print(json.dumps({"reads": reads, "bad": bad}))
""")


def test_concurrent_writers_never_show_a_partial_or_mixed_file(tmp_path: Path) -> None:
    """Four processes rewrite one results file while a fifth reads it without pause."""
    target, stop = tmp_path / "results.json", tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    reader = subprocess.Popen([sys.executable, "-c", READER, str(target), str(stop)], env=env,
                              stdout=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(w), "25"], env=env)
               for w in range(4)]
    try:
        assert [w.wait(timeout=300) for w in writers] == [0, 0, 0, 0]
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    counts = json.loads(out)
    assert counts["reads"] > 0 and counts["bad"] == 0, counts
    final = json.loads(target.read_text())
    assert final["writer"] in range(4) and final["n"] == 24  # the last rename of some writer's last round
    assert _leftovers(tmp_path) == []
