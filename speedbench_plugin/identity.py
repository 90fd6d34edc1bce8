"""Which model ran: a fingerprint that changes when the weights, the config or the served model
change, so the regression gate's "model changed" check can fire.

* A local directory: sha256 over ``config.json`` and every weight file. Files inside a Hugging
  Face hub cache are symlinks to blobs named by their own sha256, which is used as is; other
  files are hashed once and remembered by (path, size, mtime) in the cache, so a 140 GB
  checkpoint is read once, not every session.
* A served model (an endpoint): what the server says about it (``/v1/models``: id, root, maximum
  length), combined with the local directory's fingerprint where one was given for the tokenizer.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedbench_plugin.cache import atomic_write_json, cache_dir, sha256_once

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")
CONFIG_FILES = ("config.json", "params.json")
_BLOB = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelIdentity:
    sha: str
    method: str  # weights-sha256 | hf-blob-names | served-model | config-only | unknown


def _memo_path() -> Path:
    return cache_dir() / "fingerprints.json"


def _load_memo() -> dict[str, str]:
    try:
        data = json.loads(_memo_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def file_sha256(path: Path, memo: dict[str, str]) -> tuple[str, str]:
    """(sha256, how): from a hub blob name, the memo, or by reading the file."""
    real = path.resolve()
    if _BLOB.match(real.name) and real.parent.name == "blobs":
        return real.name, "hf-blob-names"
    stat = real.stat()
    key = f"{real}:{stat.st_size}:{stat.st_mtime_ns}"
    if key not in memo:
        memo[key] = sha256_once(real)  # shared with the cache's own integrity check
    return memo[key], "weights-sha256"


def local_identity(path: str | Path) -> ModelIdentity:
    root = Path(path)
    weights = sorted({f for pattern in WEIGHT_PATTERNS for f in root.glob(pattern)})
    configs = [root / name for name in CONFIG_FILES if (root / name).is_file()]
    if not weights and not configs:
        return ModelIdentity("unknown", "unknown")
    memo = _load_memo()
    size_before = len(memo)
    digest = hashlib.sha256()
    methods = set()
    for file in configs + weights:
        sha, how = file_sha256(file, memo)
        methods.add(how if file in weights else "config")
        digest.update(file.name.encode())
        digest.update(sha.encode())
    if len(memo) != size_before:
        atomic_write_json(_memo_path(), memo)
    if not weights:
        method = "config-only"
    elif "weights-sha256" in methods:
        method = "weights-sha256"
    else:
        method = "hf-blob-names"
    return ModelIdentity(digest.hexdigest(), method)


def served_identity(served: Mapping[str, Any], local: ModelIdentity | None = None) -> ModelIdentity:
    """A served model: the server's description of it (never the endpoint URL or credentials)."""
    facts = {key: served.get(key) for key in ("id", "root", "max_model_len") if served.get(key) is not None}
    if local is not None and local.method != "unknown":
        facts["local"] = local.sha
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    suffix = f"+{local.method}" if local is not None and "local" in facts else ""
    return ModelIdentity(digest, "served-model" + suffix)
