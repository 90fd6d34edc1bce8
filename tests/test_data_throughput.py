"""Throughput prompts: exact lengths in the real tokenizer, deterministic cut and pad, cache and skip rules."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from speedbench_plugin.cache import cache_dir
from speedbench_plugin.data import ALL_TIERS, DataUnavailable, load_throughput
from speedbench_plugin.data.lengths import BucketTooSmall, ChatFrame, exact_prompt, fit_body
from speedbench_plugin.data.throughput import build_throughput, cache_folder, tokenizer_key

BUCKETS = [256, 1024]
PER_CELL = 3


def test_fit_body_cuts_and_pads_deterministically():
    assert fit_body(list(range(10)), [90, 91], 6, [7, 8]) == [0, 1, 2, 3, 90, 91]
    assert fit_body([1, 2], [9], 8, [7, 8]) == [1, 2, 7, 8, 7, 8, 7, 9]
    assert fit_body([], [], 3, [5]) == [5, 5, 5]
    with pytest.raises(BucketTooSmall):
        fit_body([1], [1, 2, 3], 2, [7])
    frame = ChatFrame((1, 2), (3,), True)
    assert exact_prompt(frame, [4] * 100, [5], 10, [6]) == [1, 2, 4, 4, 4, 4, 4, 4, 5, 3]
    with pytest.raises(BucketTooSmall):
        exact_prompt(frame, [4], [5], 3, [6])


@pytest.fixture(scope="module")
def models():
    from speedbench_plugin.models import ModelUnavailable, embedded_model, tiny_model

    try:
        return embedded_model(), tiny_model()
    except ModelUnavailable as exc:
        pytest.skip(f"embedded model unavailable: {exc}")


def _isolated_cache(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh data cache that still sees the extracted corpora (read-only) of the real one."""
    real_sources = cache_dir() / "data" / "sources"
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(root))
    if real_sources.exists():
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "data" / "sources").symlink_to(real_sources)


@pytest.fixture(scope="module")
def built(models, tmp_path_factory):
    model, _ = models
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        _isolated_cache(root, patch)
        manifest = build_throughput(model, buckets=BUCKETS, per_cell=PER_CELL, progress=False)
    return model, manifest, root


@pytest.fixture
def in_cache(built, monkeypatch):
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(built[2]))
    return built


def test_every_prompt_is_exactly_its_bucket_in_the_target_tokens(in_cache):
    from speedbench_plugin.prompts import ChatTokenizer

    model, manifest, _ = in_cache
    chat = ChatTokenizer(str(model))
    prompts = load_throughput(model, buckets=BUCKETS)
    assert len(prompts) == len(BUCKETS) * len(ALL_TIERS) * PER_CELL
    template = chat.render([{"role": "user", "content": "X"}])
    head, _, tail = template.partition("X")
    prefix, suffix = chat.encode_text(head), chat.encode_text(tail)
    for prompt in prompts:
        assert len(prompt.prompt_ids) == prompt.bucket, prompt.question_id
        assert list(prompt.prompt_ids[: len(prefix)]) == prefix  # the chat template is included
        assert list(prompt.prompt_ids[-len(suffix):]) == suffix
    assert manifest["tokenizer"]["frame_matches_template_encoding"] is True
    assert {p.tier for p in prompts} == set(ALL_TIERS)


# The closing instruction of each sub-task (corpora.py), which the cut must never remove.
CLOSINGS = {
    "repository_code": "adding a type hint to every function parameter and changing nothing else.",
    "sorting": "remove duplicates, and output one name per line.",
    "needle_in_haystack": "Quote the sentence that states it.",
    "few_shot_qa": "?\nA:",
}


def test_closing_instruction_survives_the_cut(in_cache):
    from speedbench_plugin.data.lengths import chat_frame
    from speedbench_plugin.prompts import ChatTokenizer

    model, _, _ = in_cache
    chat = ChatTokenizer(str(model))
    suffix = len(chat_frame(chat).suffix)
    prompts = load_throughput(model, buckets=BUCKETS, tiers=["low_entropy", "mixed"])
    # Index 0 and 2 of low_entropy are code, 1 is sorting; mixed 0 and 2 are needles.
    assert {"repository_code", "sorting", "needle_in_haystack"} <= {p.sub_task for p in prompts}
    for prompt in prompts:
        body = chat.decode(prompt.prompt_ids[:-suffix])  # the user message, without the template's tail
        assert body.endswith(CLOSINGS[prompt.sub_task]), (prompt.question_id, body[-120:])
    needles = [p for p in prompts if p.sub_task == "needle_in_haystack"]
    for prompt in needles:
        text = chat.decode(prompt.prompt_ids)
        project = text.rsplit("What is the secret passphrase for project ", 1)[1].split("?")[0]
        assert f"The secret passphrase for project {project} is " in text, prompt.question_id  # the needle survived


def test_build_is_deterministic(in_cache, tmp_path, monkeypatch):
    model, manifest, _ = in_cache
    _isolated_cache(tmp_path, monkeypatch)
    again = build_throughput(model, buckets=[256], per_cell=PER_CELL, progress=False)
    assert again["buckets"]["256"]["prompt_sha256"] == manifest["buckets"]["256"]["prompt_sha256"]
    assert len(set(manifest["buckets"]["1024"]["prompt_sha256"].values())) == len(ALL_TIERS) * PER_CELL


def test_random_tier_holds_no_special_tokens(in_cache):
    from speedbench_plugin.prompts import ChatTokenizer

    model, _, _ = in_cache
    chat = ChatTokenizer(str(model))
    special = set(chat.tokenizer.all_special_ids)
    frame_len = 40  # well past the template prefix
    for prompt in load_throughput(model, buckets=[1024], tiers=["random"]):
        body = prompt.prompt_ids[frame_len:-10]
        assert not special & set(body)
    a, b = load_throughput(model, buckets=[1024], tiers=["random"], num_per_cell=2)
    assert a.prompt_ids != b.prompt_ids


def test_bucket_beyond_context_is_skipped_with_a_message(in_cache, models, caplog):
    _, tiny = models  # same tokenizer, context 4096
    assert tokenizer_key(tiny) == tokenizer_key(in_cache[0])
    with caplog.at_level(logging.WARNING):
        prompts = load_throughput(tiny, buckets=[1024, 8192], num_per_cell=1, max_tokens=64)
    assert {p.bucket for p in prompts} == {1024}
    assert "8192" in caplog.text and "context of 4096" in caplog.text
    with caplog.at_level(logging.WARNING):
        assert load_throughput(tiny, buckets=[1024], max_tokens=4000) == []


def test_missing_or_short_builds_say_how_to_build(in_cache, tmp_path, monkeypatch):
    model, _, _ = in_cache
    with pytest.raises(DataUnavailable, match="--buckets 2048"):
        load_throughput(model, buckets=[2048])
    with pytest.raises(DataUnavailable, match="--per-cell 10"):
        load_throughput(model, buckets=[256], num_per_cell=10)
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(tmp_path))
    with pytest.raises(DataUnavailable, match="make data"):
        load_throughput(model, buckets=[256])


def test_build_skips_buckets_that_leave_no_room_for_output(in_cache, tmp_path, models, monkeypatch):
    _, tiny = models
    _isolated_cache(tmp_path, monkeypatch)
    manifest = build_throughput(tiny, buckets=[4096], per_cell=1, tiers=["random"], progress=False)
    assert "4096" in manifest["skipped_buckets"] and manifest["buckets"] == {}


def test_short_bodies_are_padded_to_the_exact_length_with_the_real_tokenizer(models):
    from speedbench_plugin.data.lengths import PAD_TEXT, chat_frame
    from speedbench_plugin.prompts import ChatTokenizer

    chat = ChatTokenizer(str(models[0]))
    frame = chat_frame(chat)
    assert frame.exact
    pad = chat.encode_text(PAD_TEXT)
    body, tail = chat.encode_text("Tell me a joke."), chat.encode_text("\n\nNow.")
    ids = exact_prompt(frame, body, tail, 300, pad)
    assert len(ids) == 300 and ids == exact_prompt(frame, body, tail, 300, pad)
    text = chat.decode(ids)
    assert text.count(PAD_TEXT.strip()) >= 20 and "Tell me a joke." in text and "\n\nNow." in text[-30:]


@pytest.fixture
def cache_copy(in_cache, tmp_path, monkeypatch):
    """A private copy of the built cache (the corpora stay a read-only link), to damage."""
    import shutil

    model, _, root = in_cache
    shutil.copytree(root, tmp_path / "cache", symlinks=True)
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(tmp_path / "cache"))
    return model, cache_folder(model)


def test_damaged_bucket_names_the_file_and_the_command_that_rebuilds_it(cache_copy):
    import shlex

    from speedbench_plugin.data.__main__ import main as cli

    model, folder = cache_copy
    before = load_throughput(model, buckets=[256])
    damaged = folder / "bucket_256.parquet"
    with damaged.open("r+b") as fh:
        fh.truncate(damaged.stat().st_size - 100)
    with pytest.raises(DataUnavailable) as err:
        load_throughput(model, buckets=[256])
    message = str(err.value)
    command = f"python -m speedbench_plugin.data build-throughput --model {model} --buckets 256 --per-cell {PER_CELL}"
    assert message.startswith(f"{damaged}: ") and "truncated or overwritten" in message
    assert message.endswith(f"Rebuild it with `{command}`")
    assert cli(shlex.split(command)[3:]) == 0  # the command as printed, offline
    assert load_throughput(model, buckets=[256]) == before  # rebuilt to the same prompts
    assert len(load_throughput(model, buckets=[1024])) == len(ALL_TIERS) * PER_CELL  # the other bucket kept


def test_damaged_manifest_is_named_and_a_build_replaces_it(cache_copy, caplog):
    model, folder = cache_copy
    (folder / "manifest.json").write_text('{"kind": "speedbench-throughput", "buck')
    with pytest.raises(DataUnavailable, match=r"manifest\.json: .*Rebuild it with `python -m speedbench_plugin"
                                              r"\.data build-throughput --model .* --buckets 256`"):
        load_throughput(model, buckets=[256])
    with caplog.at_level(logging.WARNING):
        build_throughput(model, buckets=[256], per_cell=PER_CELL, progress=False)
    assert "manifest.json: unreadable" in caplog.text
    assert len(load_throughput(model, buckets=[256])) == len(ALL_TIERS) * PER_CELL
    with pytest.raises(DataUnavailable, match="--buckets 1024"):  # forgotten with the manifest: built on demand
        load_throughput(model, buckets=[1024])
