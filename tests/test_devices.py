"""Worker-to-GPU assignment under pytest-xdist (speedbench_plugin.devices), tested on CPU.

The assignment is a pure function of the visible devices, the worker count and the GPUs one engine
uses, so 1-8 GPU layouts are checked without a GPU; a pytester run with ``-n 2`` on the fake
engine (a synthetic engine: no model runs) checks that each worker's process and records carry its
own device set, and that an oversubscribed layout is refused before any test runs.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
from recordkit import make_record

from speedbench_plugin import devices as d
from speedbench_plugin.record import Record

GPUS = {n: d.Visible(tuple(str(i) for i in range(n)), "nvidia-smi") for n in (1, 2, 4, 8)}

# Every layout that fits, written out: (GPUs, TP) -> {workers: each worker's devices}.
EXPECTED = {
    (1, 1): {1: [("0",)]},
    (1, 2): {},
    (2, 1): {1: [("0",)], 2: [("0",), ("1",)]},
    (2, 2): {1: [("0", "1")]},
    (4, 1): {1: [("0",)], 2: [("0",), ("1",)], 4: [("0",), ("1",), ("2",), ("3",)]},
    (4, 2): {1: [("0", "1")], 2: [("0", "1"), ("2", "3")]},
    (8, 1): {1: [("0",)], 2: [("0",), ("1",)], 4: [("0",), ("1",), ("2",), ("3",)],
             8: [(str(i),) for i in range(8)]},
    (8, 2): {1: [("0", "1")], 2: [("0", "1"), ("2", "3")], 4: [("0", "1"), ("2", "3"), ("4", "5"), ("6", "7")]},
}


@pytest.mark.parametrize(("gpus", "tp"), sorted(EXPECTED))
def test_each_worker_gets_its_own_contiguous_devices(gpus: int, tp: int) -> None:
    for workers, shares in EXPECTED[(gpus, tp)].items():
        assert d.assign(GPUS[gpus], workers, tp) == shares
        # Through the per-process plan, as each worker computes it from its id.
        plans = [d.plan(GPUS[gpus], (tp, 1), f"gw{i}", workers) for i in range(workers)]
        assert [p.devices for p in plans] == shares and all(p.problem is None for p in plans)
        assert len({dev for share in shares for dev in share}) == workers * tp  # no GPU twice


@pytest.mark.parametrize(("gpus", "tp"), sorted(EXPECTED))
def test_one_worker_too_many_is_refused_with_the_numbers(gpus: int, tp: int) -> None:
    workers = gpus // tp + 1
    with pytest.raises(d.LayoutError) as caught:
        d.assign(GPUS[gpus], workers, tp)
    message = str(caught.value)
    if workers > 1:
        assert f"{workers} xdist workers x tensor_parallel_size {tp} = {workers * tp} GPUs needed, but {gpus} visible" \
            in message
        assert f"run with -n {gpus // tp}" in message
    else:
        assert f"one engine with tensor_parallel_size {tp} needs {tp} GPUs, but {gpus} visible" in message
        assert "lower tensor_parallel_size" in message
    plan = d.plan(GPUS[gpus], (tp, 1), "gw0", workers)
    assert plan.devices is None and plan.problem == message


def test_pipeline_parallel_counts_toward_the_engine_share() -> None:
    assert d.assign(GPUS[8], 2, 2, 2) == [("0", "1", "2", "3"), ("4", "5", "6", "7")]
    with pytest.raises(d.LayoutError, match="x pipeline_parallel_size 2 = 8 GPUs needed, but 4 visible"):
        d.assign(GPUS[4], 2, 2, 2)


def test_without_gpus_nothing_is_pinned() -> None:
    nothing = d.visible_devices(None, {}, query=lambda: None)
    assert nothing == d.Visible((), "no nvidia-smi")
    for worker in (None, "gw0", "gw3"):
        assert d.plan(nothing, (2, 1), worker, 4) == d.Pinning()
    assert d.Pinning().label is None


def test_single_process_takes_the_first_devices() -> None:
    assert d.plan(GPUS[4], (2, 1), None, None).label == "0,1"


def test_where_the_device_list_comes_from() -> None:
    def smi() -> tuple[str, ...]:
        return ("0", "1")

    assert d.visible_devices(("3", "5"), {"CUDA_VISIBLE_DEVICES": "0"}, smi) == d.Visible(("3", "5"), "--speedbench-devices")
    assert d.visible_devices(None, {"CUDA_VISIBLE_DEVICES": "4, 6"}, smi) == d.Visible(("4", "6"), "CUDA_VISIBLE_DEVICES")
    # CUDA hides every device after a -1, and all of them for an empty value.
    assert d.visible_devices(None, {"CUDA_VISIBLE_DEVICES": "2,-1,3"}, smi).devices == ("2",)
    assert d.visible_devices(None, {"CUDA_VISIBLE_DEVICES": ""}, smi).devices == ()
    assert d.visible_devices(None, {}, smi) == d.Visible(("0", "1"), "nvidia-smi")
    assert d.visible_devices((), {}, smi).devices == ()  # --speedbench-devices off


def test_a_chosen_subset_suggests_making_more_visible() -> None:
    message = d.oversubscription(d.Visible(("4", "5"), "CUDA_VISIBLE_DEVICES"), 4, 1)
    assert message is not None and "make 4 GPUs visible (CUDA_VISIBLE_DEVICES)" in message
    every_gpu = d.oversubscription(d.Visible(("0", "1"), "nvidia-smi"), 4, 1)
    assert every_gpu is not None and "visible (" not in every_gpu.split("Fix:")[1]


def test_worker_ids() -> None:
    assert [d.worker_index(w) for w in ("gw0", "gw1", "gw12")] == [0, 1, 12]
    with pytest.raises(ValueError, match="not a pytest-xdist worker id"):
        d.worker_index("master")


def test_a_replacement_worker_does_not_guess() -> None:
    # xdist names the worker that replaces a crashed one gwN (N = the worker count).
    plan = d.plan(GPUS[4], (1, 1), "gw4", 4)
    assert plan.devices is None and plan.problem is not None and "replaced a crashed worker" in plan.problem


def test_device_option_parsing() -> None:
    assert d._device_list("0, 1,2", "speedbench-devices") == ("0", "1", "2")
    assert d._device_list("off", "speedbench-devices") == ()
    assert d._device_list(None, "speedbench-devices") is None
    with pytest.raises(pytest.UsageError, match="listed twice"):
        d._device_list("0,0", "speedbench-devices")


# --- end to end on the fake engine ----------------------------------------------------------------

CASES = """
import json, os
import pytest
from speedbench_plugin.runner import WorkItem

ITEMS = [WorkItem(f"q{i}", "demo", prompt_ids=tuple(range(5 + i))) for i in range(3)]

@pytest.mark.qualitative
@pytest.mark.parametrize("label", ["a", "b", "c", "d", "e", "f"])
def test_case(sb_case, sb_engine, label):
    sb_case.run(ITEMS, split="qualitative", labels={"category": label}, concurrency=1)
    with open("seen.jsonl", "a") as out:
        out.write(json.dumps({"worker": os.environ.get("PYTEST_XDIST_WORKER"), "label": label,
                              "env": os.environ.get("CUDA_VISIBLE_DEVICES"), "engine": sb_engine.devices}) + "\\n")
"""


def _run(pytester: pytest.Pytester, model: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_cases=CASES)
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--speedbench-engine", "fake", f"--speedbench-model={model}",
        "--speedbench-drafter", "ngram:k=3", "--speedbench-max-tokens", "16", "--speedbench-progress", "off",
        f"--speedbench-run-dir={pytester.path / 'run'}", "--speedbench-json", str(pytester.path / "own.json"), *args,
    )


def test_xdist_workers_pin_their_own_devices(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytest.importorskip("xdist")
    result = _run(pytester, tiny_model_dir, "-n", "2", "--speedbench-devices", "0,1,2,3",
                  "--speedbench-engine-args", "tensor_parallel_size=2")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines([("*speedbench devices (4 visible (0,1,2,3, from --speedbench-devices), 2 per engine): "
                                  "gw0 -> CUDA_VISIBLE_DEVICES=0,1; gw1 -> CUDA_VISIBLE_DEVICES=2,3*")])
    seen = [json.loads(line) for line in (pytester.path / "seen.jsonl").read_text().splitlines()]
    by_worker: dict[str, set[tuple[str, str]]] = {}
    for row in seen:
        by_worker.setdefault(row["worker"], set()).add((row["env"], row["engine"]))
    assert by_worker == {"gw0": {("0,1", "0,1")}, "gw1": {("2,3", "2,3")}}
    # The device set is in every record's case key, and each worker's records carry its own.
    records = {b["name"]: b["extra_info"]["speedbench"] for b in json.loads((pytester.path / "own.json").read_text())["benchmarks"]}
    worker_of = {row["label"]: row["worker"] for row in seen}
    assert len(records) == 6
    for name, record in records.items():
        label = record["case"]["category"]
        assert record["case"]["devices"] == {"gw0": "0,1", "gw1": "2,3"}[worker_of[label]], name


def test_oversubscribed_layout_is_refused_before_any_test_runs(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytest.importorskip("xdist")
    result = _run(pytester, tiny_model_dir, "-n", "2", "--speedbench-devices", "0,1,2",
                  "--speedbench-engine-args", "tensor_parallel_size=2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([("ERROR: --speedbench-devices: 2 xdist workers x tensor_parallel_size 2 = 4 GPUs needed, "
                                  "but 3 visible (0,1,2, from --speedbench-devices)*Fix: run with -n 1*")])
    assert not (pytester.path / "seen.jsonl").exists()


def test_without_xdist_a_too_large_engine_is_refused(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result = _run(pytester, tiny_model_dir, "--speedbench-devices", "0", "--speedbench-engine-args", "tensor_parallel_size=2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([("ERROR: --speedbench-devices: one engine with tensor_parallel_size 2 needs 2 GPUs, "
                                  "but 1 visible*")])


@pytest.mark.parametrize("xdist", [("-n", "2"), ()], ids=["xdist", "single"])
def test_no_gpus_no_pinning(pytester: pytest.Pytester, tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch,
                            xdist: tuple[str, ...]) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi: the machine has no GPU driver
    if xdist:
        pytest.importorskip("xdist")
    result = _run(pytester, tiny_model_dir, *xdist, "--speedbench-engine-args", "tensor_parallel_size=2")
    result.assert_outcomes(passed=6)
    seen = [json.loads(line) for line in (pytester.path / "seen.jsonl").read_text().splitlines()]
    assert {(row["env"], row["engine"]) for row in seen} == {(None, None)}
    records = json.loads((pytester.path / "own.json").read_text())["benchmarks"]
    assert {b["extra_info"]["speedbench"]["case"]["devices"] for b in records} == {None}
    assert "speedbench devices" not in result.stdout.str()


# --- what the gate makes of the device set -------------------------------------------------------


def _on(record: Record, devices: str | None) -> Record:
    return dataclasses.replace(record, case=dataclasses.replace(record.case, devices=devices))


def test_the_gate_compares_the_gpu_share_not_the_worker_it_landed_on() -> None:
    from speedbench_plugin.compare import judge

    base = make_record("ngram:k=3", category="coding")
    # Under xdist a case runs on whichever worker is free: GPU 0 in the baseline, GPU 1 now.
    assert judge.speed_blockers(_on(base, "0"), _on(base, "1"), {}, {}) == []
    assert judge.speed_blockers(_on(base, "0,1"), _on(base, "2,3"), {}, {}) == []
    # Another share of GPUs (tensor parallelism), or pinned against not pinned, is another fingerprint.
    assert judge.speed_blockers(_on(base, "0"), _on(base, "0,1"), {}, {}) == ["devices '1 GPU' -> '2 GPUs'"]
    assert judge.speed_blockers(_on(base, None), _on(base, "0"), {}, {}) == ["devices None -> '1 GPU'"]
