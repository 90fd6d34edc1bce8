"""Candidate pools for the 11 qualitative categories, built from the installed corpora.

Prompts are made the way SPEED-Bench makes them: a task instruction around real source text
(rag = retrieved passages + question, summarization = document + instruction, multilingual =
prompts in several languages, roleplay = a dialogue to continue in character). The instruction
wording is the suite's own; the source text is read at build time and never stored in the repo.

Per-source caps keep pools balanced and the embedding step small; sampling is seeded, so the
same sources always give the same pool.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from speedbench_plugin.data.schema import QUALITATIVE_CATEGORIES, Question
from speedbench_plugin.data.sources import (
    BIGBENCH_URL,
    BigBenchMissing,
    SourceLog,
    SourceUnavailable,
    bigbench_task,
    humaneval_problems,
    mtbench_questions,
    pydoc_topics,
)

BIGBENCH_MISSING = "BIG-bench is not extracted (python -m speedbench_plugin.data fetch-bigbench)"
MTBENCH_URL = "https://github.com/lm-sys/FastChat/tree/main/fastchat/llm_judge/data/mt_bench"
HUMANEVAL_URL = "https://github.com/openai/human-eval"
PYDOC_URL = "https://docs.python.org/3/reference/"
MAX_DOC_CHARS = 3000  # long articles are cut at a sentence end to keep qualitative prompts ~<1k tokens
# MT-Bench's categories mapped onto SPEED-Bench's (extraction = answer from a given document).
MTBENCH_CATEGORY = {"writing": "writing", "roleplay": "roleplay", "reasoning": "reasoning", "math": "math",
                    "coding": "coding", "extraction": "rag", "stem": "stem", "humanities": "humanities"}

# Follow-up turns added to a seeded ~20% of single-turn candidates (SPEED-Bench: ~20% multi-turn).
FOLLOW_UPS: dict[str, tuple[str, ...]] = {
    "coding": ("Now write three unit tests for your solution.",
               "What is the time and space complexity of your solution? Can it be improved?",
               "Rewrite the solution with type hints and a docstring."),
    "math": ("Verify your answer using a different method.", "Explain the solution to a 12-year-old.",
             "Generalise the problem and solve the general case."),
    "humanities": ("What would a critic of this view say?", "Summarise your answer in three bullet points.",
                   "How has thinking on this question changed over time?"),
    "stem": ("Give a real-world example of this.", "What common mistake do students make here?",
             "Explain it again without any equations."),
    "writing": ("Rewrite it in half the length.", "Now make the tone more formal.",
                "Give it a title and a one-sentence tagline."),
    "summarization": ("Now list the three most important facts as bullet points.",
                      "Rewrite the summary for a ten-year-old.", "What question does the text leave open?"),
    "roleplay": ("Stay in character and respond to an unexpected interruption.",
                 "Now continue the scene two more exchanges.", "Describe what your character is thinking."),
    "rag": ("Quote the sentence that supports your answer.", "What in the passages contradicts other sources?",
            "Answer again in one short sentence."),
    "multilingual": ("Now translate your answer into English.", "Answer again more briefly.",
                     "Explain one difficult word from the text."),
    "reasoning": ("Explain where people usually go wrong with this.", "Now check your reasoning step by step.",
                  "How would the answer change if one condition were removed?"),
    "qa": ("How confident are you, and why?", "Give one related fact.", "Explain your answer in one paragraph."),
}


@dataclass
class PoolReport:
    """What the pools contain and what was left out (never silently)."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # category -> sub_category -> n
    duplicates_dropped: dict[str, int] = field(default_factory=dict)
    unavailable: dict[str, list[str]] = field(default_factory=dict)  # category -> reasons


def _seed(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode("utf-8"))


def sample(items: Sequence[Any], cap: int, key: str) -> list[Any]:
    """Up to ``cap`` items, seeded by ``key``, kept in source order."""
    if len(items) <= cap:
        return list(items)
    picked = np.random.default_rng(_seed(key)).choice(len(items), size=cap, replace=False)
    return [items[i] for i in sorted(picked)]


def clip(text: str, limit: int = MAX_DOC_CHARS) -> str:
    """Cut long text at the last sentence end (or space) before ``limit``."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[:limit]
    for mark in (". ", "。", "! ", "? ", "\n"):
        cut = head.rfind(mark)
        if cut > limit // 2:
            return head[: cut + len(mark)].strip()
    return head[: head.rfind(" ")].strip() if " " in head else head


def options(example: dict[str, Any]) -> list[str]:
    return list(example.get("target_scores", {}).keys())


def with_options(text: str, choices: Sequence[str], ask: str = "Choose the correct option and explain your reasoning.") -> str:
    lines = [f"({chr(65 + i)}) {choice}" for i, choice in enumerate(choices)]
    return f"{text.strip()}\n\nOptions:\n" + "\n".join(lines) + f"\n\n{ask}"


class PoolBuilder:
    """Collects candidates per category; ``add`` validates nothing but ids and dedupes by text."""

    def __init__(self, log: SourceLog) -> None:
        self.log = log
        self.pools: dict[str, list[Question]] = {c: [] for c in QUALITATIVE_CATEGORIES}
        self.report = PoolReport()
        self._texts: set[str] = set()
        # rag question id -> the corpus indices of the passages retrieved beside its own context:
        # recorded with the selection so a rebuild can skip the retriever's embeddings.
        self.rag_passages: dict[str, list[int]] = {}

    def add(self, category: str, sub: str, source: str, src_id: object, turns: Sequence[str],
            source_url: str, difficulty: str | None = None, follow_up: bool = True) -> None:
        turns = [t.strip() for t in turns if t and t.strip()]
        if not turns:
            return
        key = "\n\n".join(turns)
        if key in self._texts:
            self.report.duplicates_dropped[category] = self.report.duplicates_dropped.get(category, 0) + 1
            return
        self._texts.add(key)
        qid = f"{category}/{source}/{src_id}"
        if follow_up and len(turns) == 1:
            turns = turns + self._follow_ups(category, qid)
        self.pools[category].append(Question(
            question_id=qid, category=category, sub_category=sub, turns=tuple(turns), source=source_url,
            src_id=str(src_id), difficulty=difficulty, multiturn=len(turns) > 1,
        ))
        per_sub = self.report.counts.setdefault(category, {})
        per_sub[sub] = per_sub.get(sub, 0) + 1

    @staticmethod
    def _follow_ups(category: str, qid: str) -> list[str]:
        roll = _seed("follow-up", qid) % 100
        choices = FOLLOW_UPS[category]
        first = choices[_seed("first", qid) % len(choices)]
        if roll < 5:  # a few three-turn conversations, as SPEED-Bench has 2-5 turns
            second = choices[(_seed("first", qid) + 1) % len(choices)]
            return [first, second]
        return [first] if roll < 20 else []

    def run(self, category: str, name: str, build: Callable[[], None]) -> None:
        """Run one source's builder; a missing source is recorded against its category."""
        try:
            build()
        except BigBenchMissing:
            self.report.unavailable.setdefault(category, []).append(f"{name}: {BIGBENCH_MISSING}")
        except SourceUnavailable as exc:
            self.report.unavailable.setdefault(category, []).append(f"{name}: {exc}")


def bb_url(task: str) -> str:
    return BIGBENCH_URL + task


def build_pools(log: SourceLog, embed: Callable[[Sequence[str]], np.ndarray],
                rag_passages: Mapping[str, Sequence[int]] | None = None) -> tuple[dict[str, list[Question]], PoolReport]:
    """Every category's candidates. ``embed`` (unit vectors) is used by rag's passage retrieval, unless
    ``rag_passages`` gives the retrieved passages (recorded by an earlier build): then only the rag
    questions it names are built, and nothing is embedded."""
    pool, _ = build_pool_builder(log, embed, rag_passages)
    return pool.pools, pool.report


def build_pool_builder(log: SourceLog, embed: Callable[[Sequence[str]], np.ndarray],
                       rag_passages: Mapping[str, Sequence[int]] | None = None) -> tuple[PoolBuilder, PoolReport]:
    """:func:`build_pools`, keeping the builder (its ``rag_passages`` say what retrieval chose)."""
    pb = PoolBuilder(log)
    pb.run("writing", "mt_bench", lambda: _mtbench(pb))
    pb.run("coding", "humaneval", lambda: _humaneval(pb))
    pb.run("summarization", "pydoc_topics", lambda: _pydoc(pb))
    for category, name, build in _BIGBENCH_BUILDERS:
        pb.run(category, name, partial(build, pb))
    pb.run("rag", "retrieval", lambda: _rag_retrieval(pb, embed, rag_passages))
    return pb, pb.report


# ---- installed packages -------------------------------------------------------------------------

def _mtbench(pb: PoolBuilder) -> None:
    for row in mtbench_questions(pb.log):
        category = MTBENCH_CATEGORY[row["category"]]
        sub = "extraction" if row["category"] == "extraction" else "mt_bench"
        pb.add(category, sub, "mt_bench", row["question_id"], row["turns"], MTBENCH_URL)


def _humaneval(pb: PoolBuilder) -> None:
    for row in humaneval_problems(pb.log):
        text = ("Complete the following Python function. Keep the signature and docstring and return the "
                f"whole function.\n\n```python\n{row['prompt']}```")
        pb.add("coding", "function_completion", "humaneval", row["task_id"].split("/")[-1], [text], HUMANEVAL_URL)


def _pydoc(pb: PoolBuilder) -> None:
    asks = ("Summarise the following section of the Python language reference in one paragraph.",
            "Summarise the following documentation for a beginner, as five bullet points.",
            "Write a short abstract of the following technical text.")
    for name, text in sorted(pydoc_topics(pb.log).items()):
        if len(text) < 400:
            continue
        ask = asks[_seed(name) % len(asks)]
        pb.add("summarization", "technical_docs", "pydoc_topics", name, [f"{ask}\n\n{clip(text)}"], PYDOC_URL)


# ---- BIG-bench ----------------------------------------------------------------------------------

def _examples(pb: PoolBuilder, task: str, cap: int) -> list[tuple[int, dict[str, Any]]]:
    rows = list(enumerate(bigbench_task(task, pb.log)["examples"]))
    return sample(rows, cap, task)


def _generic(category: str, task: str, sub: str, cap: int, ask: str | None = None,
             difficulty: str | None = None, use_options: bool = True) -> Callable[[PoolBuilder], None]:
    """A task whose input is already a question: add its options (if any) and an instruction."""
    def build(pb: PoolBuilder) -> None:
        for i, ex in _examples(pb, task, cap):
            text = ex.get("input", "").strip()
            if not text:
                continue
            choices = options(ex) if use_options else []
            if choices:
                text = with_options(text, choices)
            elif ask:
                text = f"{text}\n\n{ask}"
            pb.add(category, sub, task.replace("/", "."), i, [text], bb_url(task), difficulty)
    return build


def _instructed(category: str, task: str, sub: str, cap: int, template: str,
                field: str = "input", transform: Callable[[str], str] = clip) -> Callable[[PoolBuilder], None]:
    """A task whose text is material for our instruction (``template`` has one ``{text}``)."""
    def build(pb: PoolBuilder) -> None:
        for i, ex in _examples(pb, task, cap):
            raw = ex.get(field)
            if isinstance(raw, list):
                raw = raw[0] if raw else ""
            if not isinstance(raw, str) or not raw.strip():
                continue
            pb.add(category, sub, task.replace("/", "."), i, [template.format(text=transform(raw))], bb_url(task))
    return build


def _unique_choices(category: str, task: str, sub: str, cap: int, templates: Sequence[str]) -> Callable[[PoolBuilder], None]:
    """Topics harvested from a task's answer options (proverbs, how-to goals) become writing prompts."""
    def build(pb: PoolBuilder) -> None:
        seen: dict[str, None] = {}
        for ex in bigbench_task(task, pb.log)["examples"]:
            for choice in options(ex):
                seen.setdefault(choice.strip().rstrip("."), None)
        for topic in sample(sorted(seen), cap, task + "/choices"):
            template = templates[_seed(topic) % len(templates)]
            pb.add(category, sub, task.replace("/", ".") + ".topic", _seed(topic), [template.format(text=topic)], bb_url(task))
    return build


def _xsum_writing(pb: PoolBuilder) -> None:
    forms = ("Write an opinion column (about 400 words) responding to this news: {text}",
             "Write a short poem inspired by this headline: {text}",
             "Write a letter to the editor of a local newspaper about this story: {text}",
             "Write a dialogue between two friends who just read this news: {text}")
    for i, ex in _examples(pb, "gem/xsum", 120):
        target = ex.get("target")
        target = target[0] if isinstance(target, list) else target
        if target:
            pb.add("writing", "news_inspired", "gem.xsum.target", i, [forms[_seed(i) % len(forms)].format(text=target)],
                   bb_url("gem/xsum"))


def _xsum_summaries(pb: PoolBuilder) -> None:
    asks = ("Summarise the following article in one sentence.",
            "Summarise the following article in three bullet points.",
            "Write a 100-word summary of the following news article.")
    for i, ex in _examples(pb, "gem/xsum", 150):
        ask = asks[_seed("xsum", i) % len(asks)]
        pb.add("summarization", "news", "gem.xsum", i, [f"{ask}\n\n{clip(ex['input'])}"], bb_url("gem/xsum"))


def _dialogue_before_question(text: str, marker: str) -> str:
    cut = text.find(marker)
    return clip(text[:cut] if cut > 0 else text, 2000)


def _topical_chat(pb: PoolBuilder) -> None:
    """One prefix per conversation (the 6th-10th utterance), to continue in character."""
    examples = bigbench_task("topical_chat", pb.log)["examples"]
    by_conversation: dict[str, tuple[int, str]] = {}
    for i, ex in enumerate(examples):
        turns = ex["input"].count("agent_")
        if 6 <= turns <= 10 and ex.get("comment") not in by_conversation:
            by_conversation[ex["comment"]] = (i, ex["input"])
    for conversation in sample(sorted(by_conversation), 120, "topical_chat"):
        i, dialogue = by_conversation[conversation]
        lines = dialogue.replace(' agent_', '\nagent_')
        last = lines.strip().split("\n")[-1].split(":")[0].strip()
        speaker = "agent_B" if last == "agent_A" else "agent_A"
        text = (f"You are {speaker}, a curious and friendly person chatting with a stranger. Stay in character "
                f"and write your next message in the conversation.\n\n{lines.strip()}")
        pb.add("roleplay", "chit_chat", "topical_chat", i, [text], bb_url("topical_chat"))


def _play_dialog(pb: PoolBuilder) -> None:
    for i, ex in _examples(pb, "play_dialog_same_or_different", 100):
        dialogue = _dialogue_before_question(ex["input"], "\nIn the preceding dialogue")
        text = ("Here is a passage of dialogue from a play. Take the role of the next speaker and continue the "
                f"scene for a few lines in the same style.\n\n{dialogue}")
        pb.add("roleplay", "play_scene", "play_dialog", i, [text], bb_url("play_dialog_same_or_different"))


def _movie_dialog(pb: PoolBuilder) -> None:
    for i, ex in _examples(pb, "movie_dialog_same_or_different", 100):
        dialogue = _dialogue_before_question(ex["input"], "-----")
        text = ("You are a character in this film scene. Reply as the next speaker, staying in character, and "
                f"then describe your character's next action.\n\n{dialogue}")
        pb.add("roleplay", "film_scene", "movie_dialog", i, [text], bb_url("movie_dialog_same_or_different"))


def _mystery(pb: PoolBuilder) -> None:
    task = "minute_mysteries_qa/freetext"
    for i, ex in _examples(pb, task, 120):
        story = clip(ex["input"], 6000)
        if i % 2:
            text = f"Summarise the following mystery story in one paragraph, without revealing the solution.\n\n{story}"
            pb.add("summarization", "story", "minute_mysteries", i, [text], bb_url(task))
        else:
            text = ("Read the case below, then answer: who is responsible, and which clue in the text proves it?"
                    f"\n\n{story}")
            pb.add("rag", "long_document_qa", "minute_mysteries", i, [text], bb_url(task))


def _qa_wikidata(pb: PoolBuilder) -> None:
    for i, ex in _examples(pb, "qa_wikidata", 100):
        text = f"Complete the statement with the correct fact, then add one sentence of context.\n\n{ex['input'].strip()} ..."
        pb.add("qa", "knowledge_base", "qa_wikidata", i, [text], bb_url("qa_wikidata"))


def _closed_book(pb: PoolBuilder) -> None:
    task = "contextual_parametric_knowledge_conflicts"
    for i, ex in _examples(pb, task, 100):
        question = _cpkc_parts(ex["input"])[0]
        if question:
            pb.add("qa", "open_domain", "nq_closed_book", i, [f"{question[0].upper()}{question[1:]}?"], bb_url(task))


def _cpkc_parts(text: str) -> tuple[str, str]:
    question, _, context = text.partition("\nContext:")
    return question.replace("Question:", "").strip().rstrip("?"), context.strip()


def _misconceptions_ru(pb: PoolBuilder) -> None:
    task = "misconceptions_russian"
    for i, ex in _examples(pb, task, 40):
        statements = options(ex)
        if statements:
            claim = statements[i % len(statements)]
            pb.add("multilingual", "ru", task, i, [f"Верно ли следующее утверждение? Объясните.\n\n{claim}"], bb_url(task))


MULTIEMO_ASK = {
    "de": "Lies die folgende Bewertung und erkläre, ob sie positiv, negativ, neutral oder gemischt ist. Begründe deine Antwort.",
    "es": "Lee la siguiente reseña y explica si es positiva, negativa, neutral o ambivalente. Justifica tu respuesta.",
    "fr": "Lisez l'avis suivant et expliquez s'il est positif, négatif, neutre ou ambivalent. Justifiez votre réponse.",
    "it": "Leggi la seguente recensione e spiega se è positiva, negativa, neutra o ambivalente. Motiva la tua risposta.",
    "ja": "次のレビューを読み、肯定的・否定的・中立・賛否両論のどれに当たるかを理由とともに説明してください。",
    "nl": "Lees de volgende recensie en leg uit of die positief, negatief, neutraal of gemengd is. Onderbouw je antwoord.",
    "pl": "Przeczytaj poniższą opinię i wyjaśnij, czy jest pozytywna, negatywna, neutralna czy ambiwalentna. Uzasadnij odpowiedź.",
    "pt": "Leia a avaliação a seguir e explique se ela é positiva, negativa, neutra ou ambivalente. Justifique sua resposta.",
    "ru": "Прочитайте отзыв и объясните, является ли он положительным, отрицательным, нейтральным или неоднозначным. Обоснуйте ответ.",
    "zh": "阅读以下评论，说明它是正面、负面、中立还是褒贬不一，并解释理由。",
}


def _multiemo(pb: PoolBuilder) -> None:
    for lang, ask in MULTIEMO_ASK.items():
        task = f"multiemo/reviews_text_{lang}"
        for i, ex in _examples(pb, task, 14):
            pb.add("multilingual", lang, f"multiemo.{lang}", i, [f"{ask}\n\n{clip(ex['input'], 2000)}"], bb_url(task))


def _bigbench_builders() -> list[tuple[str, str, Callable[[PoolBuilder], None]]]:
    explain = "Explain your answer."
    step = "Think step by step, then give your answer."
    return [
        # coding
        ("coding", "auto_debugging", _generic("coding", "auto_debugging", "debugging", 60, explain)),
        ("coding", "code_line_description", _instructed(
            "coding", "code_line_description", "code_explanation", 60,
            "Explain step by step what the following Python code does and what it prints.\n\n```python\n{text}```")),
        # math
        ("math", "elementary_math_qa", _generic("math", "elementary_math_qa/question_only", "word_problem", 220,
                                                use_options=False, ask="Solve the problem step by step and give the final answer.")),
        ("math", "identify_math_theorems", _instructed(
            "math", "identify_math_theorems", "proof", 54,
            "Is the following statement true as written? Prove it, or give a counterexample and correct it.\n\n{text}")),
        ("math", "mathematical_induction", _instructed(
            "math", "mathematical_induction", "proof_check", 70,
            "Is the following argument a valid proof by induction? Explain why or why not.\n\n{text}")),
        # humanities
        ("humanities", "hindu_knowledge", _generic("humanities", "hindu_knowledge", "religion_mythology", 80)),
        ("humanities", "moral_permissibility", _generic("humanities", "moral_permissibility", "ethics", 80, use_options=False,
                                                        ask="Discuss the ethical considerations on both sides before giving your answer.")),
        ("humanities", "anachronisms", _instructed(
            "humanities", "anachronisms", "history", 80,
            "Does the following sentence contain an anachronism? Explain the historical context.\n\n{text}")),
        ("humanities", "understanding_fables", _generic("humanities", "understanding_fables", "literature", 80, use_options=False,
                                                        ask="Answer in your own words and explain how the story shows it.")),
        ("humanities", "what_is_the_tao", _generic("humanities", "what_is_the_tao", "translation_style", 36, use_options=False,
                                                   ask=explain)),
        ("humanities", "simple_ethical_questions", _generic("humanities", "simple_ethical_questions", "ai_ethics", 60)),
        # stem
        ("stem", "physics", _generic("stem", "physics", "physics_formula", 120)),
        ("stem", "physics_questions", _generic("stem", "physics_questions", "physics_problem", 54,
                                               ask="Solve the problem and show your work.")),
        ("stem", "periodic_elements", _generic("stem", "periodic_elements/subtask_0", "chemistry", 40, use_options=False,
                                               ask="Also describe one property and one use of this element.")),
        ("stem", "human_organs_senses", _generic("stem", "human_organs_senses", "biology", 42, use_options=False,
                                                 ask="Explain briefly how it works.")),
        # writing
        ("writing", "scientific_press_release", _instructed(
            "writing", "scientific_press_release", "press_release", 50,
            "Write a press release of about 300 words announcing the research paper titled \"{text}\".")),
        ("writing", "goal_step_wikihow", _unique_choices("writing", "goal_step_wikihow/goal_inference", "how_to", 100, (
            "Write a clear, step-by-step how-to guide: how to {text}.",
            "Write a friendly blog post giving practical advice on how to {text}."))),
        ("writing", "english_proverbs", _unique_choices("writing", "english_proverbs", "story", 100, (
            "Write a short story (about 400 words) that illustrates the proverb \"{text}\".",
            "Write a fable whose moral is \"{text}\"."))),
        ("writing", "gem/xsum", _xsum_writing),
        # summarization
        ("summarization", "gem/xsum", _xsum_summaries),
        ("summarization", "gem/wikilingua_en", _instructed(
            "summarization", "gem/wikilingua_en", "how_to_article", 100,
            "Summarise the following instructions as a short numbered list of steps.\n\n{text}")),
        ("summarization", "minute_mysteries_qa", _mystery),
        # roleplay
        ("roleplay", "topical_chat", _topical_chat),
        ("roleplay", "play_dialog", _play_dialog),
        ("roleplay", "movie_dialog", _movie_dialog),
        # multilingual
        ("multilingual", "gem/mlsum_de", _instructed("multilingual", "gem/mlsum_de", "de", 40,
                                                     "Fasse den folgenden Artikel in drei Sätzen zusammen.\n\n{text}")),
        ("multilingual", "gem/mlsum_es", _instructed("multilingual", "gem/mlsum_es", "es", 40,
                                                     "Resume el siguiente artículo en tres frases.\n\n{text}")),
        ("multilingual", "gem/wikilingua_multilingual", _instructed(
            "multilingual", "gem/wikilingua_multilingual", "cross_lingual", 40,
            "Summarise the following text in English.\n\n{text}")),
        ("multilingual", "multiemo", _multiemo),
        ("multilingual", "hindi_question_answering", _instructed(
            "multilingual", "hindi_question_answering", "hi", 30,
            "निम्नलिखित अनुच्छेद पढ़िए और अंत में दिए गए प्रश्न का उत्तर दीजिए।\n\n{text}")),
        ("multilingual", "parsinlu_qa", _generic("multilingual", "parsinlu_qa", "fa", 30)),
        ("multilingual", "swahili_english_proverbs", _instructed(
            "multilingual", "swahili_english_proverbs", "sw", 30,
            "Eleza maana ya methali hii ya Kiswahili na utoe mfano wa matumizi yake: {text}")),
        ("multilingual", "kannada", _instructed("multilingual", "kannada", "kn", 30,
                                                "Solve this Kannada riddle. Answer in Kannada and explain your reasoning.\n\n{text}")),
        ("multilingual", "cryobiology_spanish", _generic("multilingual", "cryobiology_spanish", "es_science", 30)),
        ("multilingual", "persian_idioms", _instructed("multilingual", "persian_idioms", "fa_idiom", 30,
                                                       "معنی این اصطلاح فارسی را توضیح دهید و یک مثال بزنید: {text}")),
        ("multilingual", "misconceptions_russian", _misconceptions_ru),
        # reasoning
        ("reasoning", "logical_deduction/three", _generic("reasoning", "logical_deduction/three_objects", "logical_deduction", 30, difficulty="easy")),
        ("reasoning", "logical_deduction/five", _generic("reasoning", "logical_deduction/five_objects", "logical_deduction", 30, difficulty="medium")),
        ("reasoning", "logical_deduction/seven", _generic("reasoning", "logical_deduction/seven_objects", "logical_deduction", 30, difficulty="hard")),
        ("reasoning", "strategyqa", _generic("reasoning", "strategyqa", "implicit_multi_hop", 50, use_options=False, ask=step)),
        ("reasoning", "navigate", _generic("reasoning", "navigate", "spatial", 30, use_options=False,
                                           ask="If you follow these instructions, do you return to the starting point? Think step by step.")),
        ("reasoning", "date_understanding", _generic("reasoning", "date_understanding", "temporal", 40)),
        ("reasoning", "causal_judgment", _generic("reasoning", "causal_judgment", "causal", 40, use_options=False, ask=step)),
        ("reasoning", "logic_grid_puzzle", _generic("reasoning", "logic_grid_puzzle", "logic_puzzle", 40)),
        ("reasoning", "fantasy_reasoning", _generic("reasoning", "fantasy_reasoning", "counterfactual", 40, use_options=False, ask=step)),
        ("reasoning", "riddle_sense", _generic("reasoning", "riddle_sense", "riddle", 49)),
        # qa
        ("qa", "qa_wikidata", _qa_wikidata),
        ("qa", "contextual_parametric_knowledge_conflicts", _closed_book),
        ("qa", "general_knowledge", _generic("qa", "general_knowledge", "general_knowledge", 70, use_options=False,
                                             ask="Answer briefly.")),
        ("qa", "known_unknowns", _generic("qa", "known_unknowns", "unanswerable", 46, use_options=False,
                                          ask="Answer if the answer is known; otherwise say why it cannot be known.")),
        ("qa", "misconceptions", _instructed("qa", "misconceptions", "misconceptions", 80,
                                             "Is the following statement true or false? Explain briefly.\n\n{text}")),
    ]


_BIGBENCH_BUILDERS = _bigbench_builders()


# ---- rag: retrieved passages + question ----------------------------------------------------------

RAG_PASSAGES = 3


def _rag_retrieval(pb: PoolBuilder, embed: Callable[[Sequence[str]], np.ndarray],
                   recorded: Mapping[str, Sequence[int]] | None = None) -> None:
    """For each question, the passages are its own context plus the nearest other contexts by MiniLM
    similarity to the question (a real dense retriever over the pool), in a seeded order. With
    ``recorded`` (question id -> neighbour corpus indices), only those questions are built, from the
    recorded neighbours, without embedding."""
    task = "contextual_parametric_knowledge_conflicts"
    rows = [(i, *_cpkc_parts(ex["input"])) for i, ex in enumerate(bigbench_task(task, pb.log)["examples"])]
    unique: dict[str, int] = {}
    for i, _, context in rows:
        unique.setdefault(context, i)
    corpus = sample(sorted(unique), 1200, task + "/corpus")
    corpus_index = {context: n for n, context in enumerate(corpus)}
    picked = sample([r for r in rows if r[2] in corpus_index and r[1]], 160, task + "/questions")
    if recorded is None:
        corpus_vectors = embed(corpus)
        question_vectors = embed([q for _, q, _ in picked])
        scores = question_vectors @ corpus_vectors.T
        for (i, _, context), row in zip(picked, scores):
            row[corpus_index[context]] = -np.inf
            pb.rag_passages[_rag_id(i)] = [int(j) for j in np.argsort(-row, kind="stable")[: RAG_PASSAGES - 1]]
    else:
        for i, _, _ in picked:
            if _rag_id(i) in recorded:
                neighbours = [int(j) for j in recorded[_rag_id(i)]]
                if any(not 0 <= j < len(corpus) for j in neighbours):
                    raise SourceUnavailable(f"recorded passages {neighbours} of {_rag_id(i)} are outside the "
                                            f"{len(corpus)}-passage corpus: the corpus changed (rebuild with --reselect)")
                pb.rag_passages[_rag_id(i)] = neighbours
    for i, question, context in picked:
        if _rag_id(i) not in pb.rag_passages:
            continue
        neighbours = pb.rag_passages[_rag_id(i)]
        passages = [context] + [corpus[j] for j in neighbours]
        order = np.random.default_rng(_seed("rag", i)).permutation(len(passages))
        listed = "\n\n".join(f"[{n + 1}] {passages[j]}" for n, j in enumerate(order))
        text = ("Answer the question using only the retrieved passages below, and cite the passage number "
                f"you relied on.\n\n{listed}\n\nQuestion: {question[0].upper()}{question[1:]}?")
        pb.add("rag", "retrieved_passages", "nq_retrieval", i, [text], bb_url(task))


def _rag_id(src_id: int) -> str:
    return f"rag/nq_retrieval/{src_id}"  # the id PoolBuilder.add gives a rag question


def pool_sizes(pools: dict[str, list[Question]]) -> dict[str, int]:
    return {category: len(items) for category, items in pools.items()}


def flatten(pools: dict[str, Iterable[Question]]) -> list[Question]:
    return [q for items in pools.values() for q in items]
