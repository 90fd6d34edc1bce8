"""Pruned draft vocabularies: reference-corpus token frequencies and the kept-token set.

A drafter with ``vocab=N`` may only propose the N most frequent tokens of a stated reference
corpus, counted with the target's tokenizer — the idea behind EAGLE3's "hot" draft vocabulary.

The reference corpus is Python's documentation: Debian's ``python3.X-doc`` reST sources (English
technical prose with code examples, PSF licence), or, where that package is missing, the
language-reference topics every interpreter ships (``pydoc_data.topics``); the corpus name says
which. It is installed locally, permissively licensed, and — the point — not the benchmark's
qualitative prompts: frequencies counted on the prompts themselves would fit the kept set to the
very inputs it is measured on. An English, code-leaning corpus is also what EAGLE3-style hot
vocabularies are in practice drawn from (English chat and code training data), so the long-tail
categories are expected to pay for the pruning, as SPEED-Bench reports.

The tokenizer's special tokens (EOS, chat-template markers) are always kept: any drafter trained on
chat data proposes them; they count towards N.

Counts are computed once per (tokenizer, corpus) and cached as ``<cache>/vocab/*.npz`` with a JSON
sidecar holding the npz's sha256 (checked on load), the corpus's sha256 and its token count.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from speedbench_plugin.cache import atomic_write_bytes, atomic_write_json, cache_dir, sha256_file

CORPUS_DOCS = "python-docs-rst"  # Debian python3.X-doc reST sources
CORPUS_TOPICS = "pydoc-data-topics"  # the interpreter's own language-reference topics (fallback)
OPTION = "vocab"  # the drafter option: draft:k=3,model=PATH,vocab=N


class VocabError(ValueError):
    """A bad ``vocab=N``, or a cached frequency file that does not match its recorded sha256."""


@dataclass(frozen=True)
class ReferenceCorpus:
    name: str
    sha256: str  # over the texts, in order
    documents: int
    licence: str
    origin: str

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "documents": self.documents,
                "licence": self.licence, "origin": self.origin}


@dataclass(frozen=True)
class TokenFrequencies:
    counts: np.ndarray  # int64, one per token id of the tokenizer
    corpus: ReferenceCorpus
    tokens: int  # corpus size in the target's tokens
    tokenizer_sha256: str
    cache_file: str
    cache_sha256: str


@dataclass(frozen=True)
class DraftVocabulary:
    """The kept token set for one ``vocab=N`` and where it came from."""

    n: int
    vocab_size: int  # the model's logit dimension
    kept: np.ndarray  # sorted token ids
    frequencies: TokenFrequencies
    always_kept: int  # special tokens kept regardless of frequency

    @property
    def mask(self) -> np.ndarray:
        mask = np.zeros(self.vocab_size, dtype=bool)
        mask[self.kept] = True
        return mask

    @property
    def kept_sha256(self) -> str:
        return hashlib.sha256(np.asarray(self.kept, dtype=np.int64).tobytes()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """What a result needs to name the pruning exactly."""
        freq = self.frequencies
        covered = int(freq.counts[self.kept[self.kept < len(freq.counts)]].sum())
        return {
            "vocab": self.n,
            "vocab_size": self.vocab_size,
            "kept_sha256": self.kept_sha256,
            "special_tokens_always_kept": self.always_kept,
            "corpus": {**freq.corpus.describe(), "tokens": freq.tokens},
            "corpus_token_coverage": round(covered / freq.tokens, 6) if freq.tokens else None,
            "tokenizer_sha256": freq.tokenizer_sha256,
            "frequencies_file": freq.cache_file,
            "frequencies_sha256": freq.cache_sha256,
        }


def reference_corpus_texts() -> tuple[ReferenceCorpus, list[str]]:
    """The corpus texts, read from the local install, and their identity."""
    from speedbench_plugin.data.sources import (
        PSF_LICENCE,
        PYTHON_DOCS_DIR,
        PYTHON_DOCS_PACKAGE,
        SourceLog,
        pydoc_topics,
        python_doc_sources,
    )

    log = SourceLog()
    files = python_doc_sources(log)
    if files:
        texts = [path.read_text(encoding="utf-8", errors="replace") for path in files]
        name, origin = CORPUS_DOCS, f"Debian {PYTHON_DOCS_PACKAGE}: {PYTHON_DOCS_DIR}/**/*.rst.txt"
    else:
        topics = pydoc_topics(log)
        texts = [topics[key] for key in sorted(topics)]
        name, origin = CORPUS_TOPICS, f"pydoc_data.topics ({PYTHON_DOCS_PACKAGE} not installed)"
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    return ReferenceCorpus(name, digest.hexdigest(), len(texts), PSF_LICENCE, origin), texts


def tokenizer_fingerprint(model_dir: str | Path) -> str:
    """sha256 over the tokenizer's own files: equal tokenizers share a frequency cache."""
    root = Path(model_dir)
    digest = hashlib.sha256()
    files = [root / name for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")]
    found = [f for f in files if f.is_file()]
    if not found:
        raise VocabError(f"{root}: no tokenizer files (tokenizer.json / vocab.json) to count tokens with")
    for file in found:
        digest.update(file.name.encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def count_tokens(token_lists: Iterable[Sequence[int]], size: int) -> np.ndarray:
    counts = np.zeros(size, dtype=np.int64)
    for ids in token_lists:
        if len(ids):
            counts += np.bincount(np.asarray(ids, dtype=np.int64), minlength=size)[:size]
    return counts


def _frequency_dir() -> Path:
    path = cache_dir() / "vocab"
    path.mkdir(parents=True, exist_ok=True)
    return path


@lru_cache(maxsize=4)
def token_frequencies(model_dir: str) -> TokenFrequencies:
    """Token counts of the reference corpus under ``model_dir``'s tokenizer (computed once, cached)."""
    corpus, texts = reference_corpus_texts()
    tok_sha = tokenizer_fingerprint(model_dir)
    stem = f"{corpus.name}-{corpus.sha256[:16]}-tok{tok_sha[:16]}"
    npz, sidecar = _frequency_dir() / f"{stem}.npz", _frequency_dir() / f"{stem}.json"
    if npz.exists() and sidecar.exists():
        meta = json.loads(sidecar.read_text())
        actual = sha256_file(npz)
        if actual != meta["npz_sha256"]:
            raise VocabError(f"{npz}: sha256 {actual} does not match {meta['npz_sha256']} in {sidecar.name} "
                             "(delete both files to recount)")
        with np.load(npz) as stored:
            counts = stored["counts"]
        return TokenFrequencies(counts, corpus, int(meta["tokens"]), tok_sha, str(npz), actual)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
    batches = (tokenizer(texts[i:i + 32], add_special_tokens=False)["input_ids"] for i in range(0, len(texts), 32))
    counts = count_tokens((ids for batch in batches for ids in batch), size)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, counts=counts)
    atomic_write_bytes(npz, buffer.getvalue())
    npz_sha = sha256_file(npz)
    atomic_write_json(sidecar, {"corpus": corpus.describe(), "tokens": int(counts.sum()),
                                "tokenizer_sha256": tok_sha, "npz_sha256": npz_sha})
    return TokenFrequencies(counts, corpus, int(counts.sum()), tok_sha, str(npz), npz_sha)


def check_vocab_option(n: int, vocab_size: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise VocabError(f"drafter option {OPTION}={n!r}: must be a positive integer")
    if n > vocab_size:
        raise VocabError(f"drafter option {OPTION}={n} is larger than the vocabulary ({vocab_size} tokens)")


def kept_token_ids(counts: np.ndarray, n: int, vocab_size: int, always: Iterable[int] = ()) -> np.ndarray:
    """The ``always`` ids plus the most frequent others (ties: lower id first), ``n`` in all, sorted."""
    check_vocab_option(n, vocab_size)
    pinned = sorted({int(t) for t in always if 0 <= int(t) < vocab_size})
    if n < len(pinned):
        raise VocabError(f"drafter option {OPTION}={n} is smaller than the {len(pinned)} special tokens "
                         "that are always kept")
    padded = np.zeros(vocab_size, dtype=np.int64)
    padded[: min(len(counts), vocab_size)] = counts[:vocab_size]
    ids = np.arange(vocab_size)
    order = np.lexsort((ids, -padded))  # by count descending, then id ascending
    rest = order[~np.isin(order, pinned)][: n - len(pinned)]
    return np.sort(np.concatenate([np.asarray(pinned, dtype=np.int64), rest]))


def out_of_vocab_share(outputs: Iterable[Sequence[int]], mask: np.ndarray) -> dict[str, Any]:
    """How many generated tokens fall outside the kept set: a drafter limited to it can never
    propose them, so each one ends a draft."""
    total = outside = 0
    for ids in outputs:
        arr = np.asarray(list(ids), dtype=np.int64)
        total += len(arr)
        inside = (arr >= 0) & (arr < len(mask))
        outside += int((~inside).sum()) + int((~mask[arr[inside]]).sum())
    return {"output_tokens": total, "outside_tokens": outside, "outside_share": outside / total if total else None}


def model_vocab_size(model_dir: str | Path) -> int:
    """The model's logit dimension, from its config (no weights loaded)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.vocab_size)


def special_token_ids(model_dir: str | Path) -> list[int]:
    from transformers import AutoTokenizer

    return sorted(set(AutoTokenizer.from_pretrained(model_dir).all_special_ids))


def draft_vocabulary(model_dir: str | Path, n: int, vocab_size: int | None = None) -> DraftVocabulary:
    """The kept set for ``vocab=n`` under ``model_dir``'s tokenizer (the target's)."""
    size = vocab_size if vocab_size is not None else model_vocab_size(model_dir)
    check_vocab_option(n, size)  # before counting a corpus
    freqs = token_frequencies(str(model_dir))
    always = special_token_ids(model_dir)
    kept = kept_token_ids(freqs.counts, n, size, always)
    return DraftVocabulary(n, size, kept, freqs, len([t for t in always if t < size]))
