"""Long-text material for the throughput tiers, read from the installed corpora.

Each ``make_*`` function returns one prompt's parts for a seeded generator: a head (instruction),
a long document and a closing instruction (tail). The document is made longer than the bucket
needs; :mod:`lengths` then cuts it to the exact token count. SPEED-Bench's tiers:

- low_entropy: repository code (to rewrite), sorting-style tasks — outputs that copy the input;
- mixed: needle-in-a-haystack selection and few-shot QA over long documents;
- high_entropy: dialogue and story continuation, open creative writing.
"""
from __future__ import annotations

import re
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from speedbench_plugin.data.sources import (
    SourceLog,
    SourceUnavailable,
    bigbench_available,
    bigbench_task,
    pydoc_topics,
    python_doc_sources,
    stdlib_sources,
)

CHARS_PER_TOKEN_LOW = 2.5  # conservative: documents are built with more text than any bucket needs


@dataclass(frozen=True)
class PromptParts:
    sub_task: str
    source: str
    head: str
    document: str
    tail: str


class Corpora:
    """Loads each corpus once per build; every method is deterministic given its rng."""

    def __init__(self, log: SourceLog) -> None:
        self.log = log
        self.fallbacks: dict[str, str] = {}

    # -- raw material ------------------------------------------------------------------------------
    @cached_property
    def code_files(self) -> list[Path]:
        return [p for p in stdlib_sources(self.log) if p.stat().st_size > 2000]

    @cached_property
    def prose(self) -> list[str]:
        """Paragraphs of technical prose: the Python docs (Debian) or, without them, pydoc topics."""
        paragraphs: list[str] = []
        files = python_doc_sources(self.log)
        if files:
            for path in files:
                paragraphs.extend(_paragraphs(path.read_text(encoding="utf-8", errors="replace")))
        else:
            self.fallbacks["haystack"] = "python docs not installed: haystacks use pydoc_data.topics"
            for _, text in sorted(pydoc_topics(self.log).items()):
                paragraphs.extend(_paragraphs(text))
        return [p for p in paragraphs if len(p) > 200]

    @cached_property
    def has_bigbench(self) -> bool:
        return bigbench_available()

    def _task(self, name: str) -> list[dict[str, Any]]:
        examples: list[dict[str, Any]] = bigbench_task(name, self.log)["examples"]
        return examples

    @cached_property
    def conversations(self) -> list[str]:
        """The longest prefix of every topical_chat conversation, one utterance per line."""
        longest: dict[str, str] = {}
        for ex in self._task("topical_chat"):
            conv = ex.get("comment", "")
            if len(ex["input"]) > len(longest.get(conv, "")):
                longest[conv] = ex["input"]
        return [longest[c].replace(" agent_", "\nagent_").strip() for c in sorted(longest)]

    @cached_property
    def stories(self) -> list[str]:
        return [ex["input"].strip() for ex in self._task("minute_mysteries_qa/freetext")]

    @cached_property
    def articles(self) -> list[str]:
        return [ex["input"].strip() for ex in self._task("gem/xsum")]

    @cached_property
    def qa_pairs(self) -> list[tuple[str, str, str]]:
        """(question, passage, answer) from Natural Questions passages (BIG-bench's knowledge-conflict task)."""
        out = []
        for ex in self._task("contextual_parametric_knowledge_conflicts"):
            question, _, context = ex["input"].partition("\nContext:")
            question = question.replace("Question:", "").strip().rstrip("?")
            if question and context.strip() and ex.get("target"):
                out.append((question, context.strip(), str(ex["target"])))
        return out

    # -- low entropy -----------------------------------------------------------------------------
    def low_entropy(self, rng: np.random.Generator, chars: int, index: int) -> PromptParts:
        return self._code(rng, chars) if index % 2 == 0 else self._sorting(rng, chars)

    def _code(self, rng: np.random.Generator, chars: int) -> PromptParts:
        files = self.code_files
        start = int(rng.integers(len(files)))
        parts, total, i = [], 0, start
        while total < chars:  # consecutive files in path order: one package's code, as in a repository
            path = files[i % len(files)]
            text = f"# file: Lib/{_lib_relative(path)}\n{path.read_text(encoding='utf-8', errors='replace')}\n"
            parts.append(text)
            total += len(text)
            i += 1
        return PromptParts("repository_code", "python-stdlib", "Here is source code from a Python repository.\n\n",
                           "".join(parts),
                           "\n\nRewrite the code above exactly as it is, adding a type hint to every function "
                           "parameter and changing nothing else.")

    def _sorting(self, rng: np.random.Generator, chars: int) -> PromptParts:
        names: list[str] = []
        start = int(rng.integers(len(self.code_files)))
        i = start
        while sum(len(n) + 3 for n in names) < chars:
            source = self.code_files[i % len(self.code_files)].read_text(encoding="utf-8", errors="replace")
            names.extend(re.findall(r"^\s*def (\w+)", source, flags=re.MULTILINE))
            i += 1
        order = rng.permutation(len(names))
        listing = "\n".join(f"- {names[j]}" for j in order)
        return PromptParts("sorting", "python-stdlib", "Here is a list of function names.\n\n", listing,
                           "\n\nSort the list above alphabetically, remove duplicates, and output one name per line.")

    # -- mixed -------------------------------------------------------------------------------------
    def mixed(self, rng: np.random.Generator, chars: int, index: int, fits: Callable[[str, str, str], int]) -> PromptParts:
        if index % 2 == 1 and self.has_bigbench:
            return self._few_shot(rng, chars)
        if index % 2 == 1:
            self.fallbacks["few_shot_qa"] = "BIG-bench not extracted: mixed tier uses needle-in-a-haystack only"
        return self._needle(rng, chars, fits)

    def _needle(self, rng: np.random.Generator, chars: int, fits: Callable[[str, str, str], int]) -> PromptParts:
        """Haystack paragraphs with five 'passphrase' needles placed at seeded depths of the part that
        survives the cut (``fits(head, text, tail)``: the characters of ``text`` the bucket keeps between the two)."""
        paragraphs = self.prose
        start = int(rng.integers(len(paragraphs)))
        chosen, total, i = [], 0, start
        while total < chars:
            chosen.append(paragraphs[i % len(paragraphs)])
            total += len(chosen[-1]) + 2
            i += 1
        head = "Read the following documentation carefully; some facts are hidden in it.\n\n"

        def ask(project: str) -> str:
            return f"\n\nWhat is the secret passphrase for project {project}? Quote the sentence that states it."

        projects = [f"{w}-{int(rng.integers(100, 999))}" for w in ("amber", "basalt", "cobalt", "delta", "ember")]
        codes = [int(rng.integers(100000, 999999)) for _ in projects]
        needles = [f"\n\nThe secret passphrase for project {p} is {c}." for p, c in zip(projects, codes)]
        # Depths within what survives the cut once every needle is in: each inserted needle pushes the
        # deeper ones further by its own length.
        longest_ask = max((ask(p) for p in projects), key=len)
        keep = fits(head, "\n\n".join(chosen), longest_ask)
        room = max(0, keep - sum(len(n) for n in needles))
        depth_chars = sorted(int(room * d) for d in rng.uniform(0.05, 0.85, size=len(projects)))
        text = "\n\n".join(chosen)
        for needle, at in sorted(zip(needles, depth_chars), key=lambda t: -t[1]):
            cut = max(text.rfind("\n\n", 0, at), 0)
            text = text[:cut] + needle + text[cut:]
        # Ask only for a needle the cut keeps (a short bucket keeps little of the haystack).
        kept = fits(head, text, longest_ask)
        survivors = [p for p, n in zip(projects, needles) if 0 <= text.find(n) and text.find(n) + len(n) <= kept]
        target = (survivors or projects)[int(rng.integers(len(survivors or projects)))]
        return PromptParts("needle_in_haystack", "python-docs", head, text, ask(target))

    def _few_shot(self, rng: np.random.Generator, chars: int) -> PromptParts:
        pairs = self.qa_pairs
        order = rng.permutation(len(pairs))
        query = pairs[int(order[0])]
        blocks, total = [], 0
        for j in order[1:]:
            question, passage, answer = pairs[int(j)]
            blocks.append(f"Passage: {passage}\nQ: {question}?\nA: {answer}")
            total += len(blocks[-1]) + 2
            if total > chars:
                break
        # The query's own passage sits among the first examples so the cut never removes it.
        blocks.insert(int(rng.integers(0, min(3, len(blocks)) + 1)), f"Passage: {query[1]}")
        return PromptParts("few_shot_qa", "bigbench/contextual_parametric_knowledge_conflicts",
                           "Answer the final question from the passages, in the style of the examples.\n\n",
                           "\n\n".join(blocks), f"\n\nQ: {query[0]}?\nA:")

    # -- high entropy --------------------------------------------------------------------------------
    def high_entropy(self, rng: np.random.Generator, chars: int, index: int) -> PromptParts:
        if not self.has_bigbench:
            self.fallbacks["high_entropy"] = "BIG-bench not extracted: high-entropy prompts continue documentation prose"
            return self._continue(rng, chars, self.prose, "prose_continuation", "python-docs",
                                  "Continue this text with a new, original essay on the same subject.")
        kind = index % 3
        if kind == 0:
            return self._continue(rng, chars, self.conversations, "dialogue_continuation", "bigbench/topical_chat",
                                  "Continue the last conversation above with ten more lively turns.")
        if kind == 1:
            return self._continue(rng, chars, self.stories, "story_continuation", "bigbench/minute_mysteries_qa",
                                  "Write a new mystery story in the same style as the stories above.")
        return self._continue(rng, chars, self.articles, "creative_writing", "bigbench/gem/xsum",
                              "Using the articles above only as inspiration, write an original short story.")

    @staticmethod
    def _continue(rng: np.random.Generator, chars: int, texts: list[str], sub: str, source: str, ask: str) -> PromptParts:
        order = rng.permutation(len(texts))
        chosen, total = [], 0
        for j in order:
            chosen.append(texts[int(j)])
            total += len(chosen[-1]) + 2
            if total > chars:
                break
        if not chosen:
            raise SourceUnavailable(f"{source}: no text")
        return PromptParts(sub, source, "", "\n\n".join(chosen), f"\n\n{ask}")


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _lib_relative(path: Path) -> str:
    try:
        return path.relative_to(sysconfig.get_paths()["stdlib"]).as_posix()
    except ValueError:
        return path.name
