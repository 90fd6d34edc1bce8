"""Where fetched models and built data live (outside the repo), safe file writes, and cache integrity.

Integrity: every folder the suite builds into its cache (a converted model, a data split) carries
``.speedbench-files.json`` with the sha256 and size of each file it wrote. :func:`verify_files`
checks them on load: a size mismatch (truncation, a partial copy) is caught by ``stat`` alone, and
each file's content is hashed in full once per process (about 1 GB/s here: 0.3 s for the embedded
model, whose weights :func:`speedbench_plugin.identity.local_identity` hashes anyway, and that
reuses the same result). A file changed afterwards in the same process gets a new mtime and is hashed
again; only a change that also restores the mtime goes unseen until the next process.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INTEGRITY_FILE = ".speedbench-files.json"
_INTEGRITY_LOCK = ".speedbench-files.lock"


def cache_dir() -> Path:
    """``$SPEEDBENCH_CACHE`` or ``~/.cache/speedbench``; created on first use."""
    root = Path(os.environ.get("SPEEDBENCH_CACHE") or Path.home() / ".cache" / "speedbench")
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# (device, inode, size, mtime_ns) -> sha256: a file is hashed once per process unless it changes.
_HASHED: dict[tuple[int, int, int, int], str] = {}


def sha256_once(path: str | os.PathLike[str]) -> str:
    """:func:`sha256_file`, remembered for this process while the file's inode, size and mtime hold."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHED:
        _HASHED[key] = sha256_file(path)
    return _HASHED[key]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ChecksumError(RuntimeError):
    pass


def verify_sha256(path: str | os.PathLike[str], expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(f"{path}: sha256 {actual} does not match the pinned {expected}")


# ---- atomic writes -------------------------------------------------------------------------------

class ResultsWriteError(OSError):
    """A file could not be written (read-only folder, full disk, a path under a file, ...).

    Raised by the atomic writers, which leave nothing behind: the target keeps its previous content
    (or stays absent) and the temporary file is removed.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, code: int | None = None) -> None:
        super().__init__(code, reason)
        self.path = Path(path)
        self.reason = reason
        hint = ""
        if code in (errno.ENOSPC, errno.EDQUOT):
            hint = " (the disk or quota is full: free space or write elsewhere)"
        elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
            hint = " (choose a writable folder)"
        self.message = (f"cannot write {self.path}: {reason}{hint}; nothing was written "
                        f"({'its previous content is unchanged' if self.path.is_file() else 'no file was created'})")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:  # OSError's own pickling would call __init__ with (errno, strerror)
        return (type(self), (str(self.path), self.reason, self.errno))


def current_umask() -> int:
    """The process umask, read without changing it (Linux reports it in /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def atomic_write_bytes(path: str | os.PathLike[str], payload: bytes) -> None:
    """Write via a temp file in the same folder and rename, so readers never see a partial file.

    Concurrent writers of one path each rename a complete file of their own: the last rename wins
    and no reader ever sees a mix. Any OS error becomes a :class:`ResultsWriteError` naming the path.
    """
    target = Path(path)
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            # mkstemp creates 0600; a results file should be as readable as any other file written here.
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(target.parent)
    except OSError as exc:
        raise ResultsWriteError(target, exc.strerror or str(exc), exc.errno) from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def ensure_writable(path: str | os.PathLike[str]) -> None:
    """Raise :class:`ResultsWriteError` now, not after hours of benchmarking, when ``path`` cannot be
    written: creates its folder, then a probe file beside it, removed at once."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ResultsWriteError(target, exc.strerror or str(exc), exc.errno) from exc


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; some filesystems cannot fsync a folder, which is harmless."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def nan_to_none(value: Any) -> Any:
    """JSON has no NaN: an undefined figure (0/0, no samples) is written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: nan_to_none(val) for key, val in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(val) for val in value]
    return value


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    text = json.dumps(nan_to_none(data), indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ---- locks ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if needed): one builder or recorder at a time,
    across processes. Not re-entrant: a holder must not take the same lock again.

    On a read-only cache there is nothing to serialise (no one can build there), so the lock is
    taken on an existing file read-only, or skipped.
    """
    lock = Path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            log.debug("no lock at %s (read-only cache)", lock)
            yield
            return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# ---- integrity -----------------------------------------------------------------------------------

class CacheIntegrityError(ChecksumError):
    """A cached file is missing, truncated or changed since the cache wrote it."""

    def __init__(self, path: str | os.PathLike[str], problem: str, rebuild: str) -> None:
        self.path = Path(path)
        self.problem = problem
        self.rebuild = rebuild
        super().__init__(f"{self.path}: {problem}; the cached copy is corrupted or incomplete. "
                         f"Rebuild it with `{rebuild}`")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self.path), self.problem, self.rebuild))


def _read_integrity(folder: Path, rebuild: str) -> dict[str, dict[str, Any]]:
    path = folder / INTEGRITY_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheIntegrityError(path, f"the checksum list is unreadable ({exc})", rebuild) from exc
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, dict):
        raise CacheIntegrityError(path, "the checksum list has no 'files' table", rebuild)
    return files


def record_files(folder: str | os.PathLike[str], names: Iterable[str], how: str = "written") -> None:
    """Hash ``names`` (files in ``folder``) into the folder's checksum list, merging with what is there.

    ``how`` says where a hash came from: ``written`` by the builder, or ``first-check`` for files
    built before checksums existed (trusted as found once, then held to it).
    """
    root = Path(folder)
    with file_lock(root / _INTEGRITY_LOCK):
        try:
            files = _read_integrity(root, "")
        except CacheIntegrityError:
            files = {}  # an unreadable list is replaced by the fresh hashes of the files recorded now
        for name in names:
            path = root / name
            files[name] = {"sha256": sha256_once(path), "size": path.stat().st_size, "recorded": how,
                           "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        atomic_write_json(root / INTEGRITY_FILE, {"kind": "speedbench-files", "files": dict(sorted(files.items()))})


def listed_files(folder: str | os.PathLike[str]) -> list[str]:
    """The folder's plain files that a checksum list covers (hidden bookkeeping files excluded)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


def verify_files(folder: str | os.PathLike[str], names: Iterable[str] | None, rebuild: str) -> list[str]:
    """Check ``names`` in ``folder`` (None: every recorded file and every listed file) against the
    checksum list; raise :class:`CacheIntegrityError` naming the first bad file and ``rebuild``.

    Files with no recorded hash (built before checksums existed) are recorded as found, when the
    folder is writable; their names are returned.
    """
    root = Path(folder)
    recorded = _read_integrity(root, rebuild)
    wanted = list(names) if names is not None else sorted(set(recorded) | set(listed_files(root)))
    unrecorded = []
    for name in wanted:
        path = root / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CacheIntegrityError(path, "the file is missing", rebuild) from None
        entry = recorded.get(name)
        if entry is None:
            unrecorded.append(name)
            continue
        if size != entry.get("size"):
            raise CacheIntegrityError(path, f"{size} bytes where {entry.get('size')} were written (truncated or "
                                            "overwritten)", rebuild)
        actual = sha256_once(path)
        if actual != entry.get("sha256"):
            when = "when it was written" if entry.get("recorded") == "written" else "at its first check"
            raise CacheIntegrityError(path, f"sha256 {actual[:16]}... does not match the {str(entry.get('sha256'))[:16]}"
                                            f"... recorded {when}", rebuild)
    if unrecorded:
        try:
            record_files(root, unrecorded, how="first-check")
            log.info("%s: recorded sha256 of %s (built before checksums were kept)", root, ", ".join(unrecorded))
        except OSError as exc:  # a read-only cache is still usable, just not upgraded
            log.info("%s: cannot record checksums (%s)", root, exc)
    return unrecorded
