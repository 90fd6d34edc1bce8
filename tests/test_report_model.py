"""The report model on real record types (tests/recordkit.py): which sections appear for which
inputs, how two runs' cases are paired and their deltas, bad input, the Markdown gate summary."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from recordkit import make_record, with_speedups

from speedbench_plugin.__main__ import main
from speedbench_plugin.cache import atomic_write_json
from speedbench_plugin.compare.judge import CaseComparison, MetricResult
from speedbench_plugin.record import Record
from speedbench_plugin.report import load_report, render
from speedbench_plugin.report.build import build_sections
from speedbench_plugin.report.markdown import COMMENT_LIMIT
from speedbench_plugin.report.model import Report, ReportInputError, Run
from speedbench_plugin.report.tables import BAD, Block, Section
from speedbench_plugin.reports import results_document


def _run(label: str, records: list[Record], **kwargs: Any) -> Run:
    return Run(label, Path(f"{label}.json"), "speedbench results", tuple(records), **kwargs)


def _sections(*runs: Run) -> list[Section]:
    return build_sections(Report.of(list(runs)))[1]


def _ids(*runs: Run) -> list[str]:
    return [s.id for s in _sections(*runs)]


def _block(sections: list[Section], title: str) -> Block:
    return next(b for s in sections for b in s.blocks if b.title.startswith(title))


def _qualitative(drafter: str, category: str, al: float = 2.0, **kwargs: Any) -> Record:
    return make_record(drafter, split="qualitative", category=category, al=al, **kwargs)


def _write(path: Path, records: list[Record], **extra: Any) -> Path:
    atomic_write_json(path, {**results_document(records), **extra})
    return path


# --- which sections appear ---------------------------------------------------------------------


def test_sections_follow_the_data() -> None:
    plain = [_qualitative("none", "coding", al=1.0)]
    assert _ids(_run("a", plain)) == ["fingerprint", "speed", "warnings"]
    with_sd = with_speedups(plain + [_qualitative("ngram:k=3", "coding")])
    ids = _ids(_run("a", with_sd))
    assert "acceptance" in ids and "throughput" not in ids and "gate" not in ids and "runs" not in ids
    sweep = with_speedups([make_record(d, concurrency=c, tier=t) for d in ("none", "ngram:k=3") for c in (1, 4)
                           for t in ("mixed", "random")])
    assert "throughput" in _ids(_run("t", sweep))
    load = [make_record("none", sections={"load": {"rows": [{"rate": 1.0, "p50_s": 0.2}]}, "mystery": {"x": 1}})]
    ids = _ids(_run("l", load))
    assert "load" in ids and "sections" in ids
    assert "runs" in _ids(_run("a", plain), _run("b", plain))


def test_heatmap_rows_hold_each_category_and_their_mean_and_range() -> None:
    records = [_qualitative("ngram:k=3", "coding", al=2.0), _qualitative("ngram:k=3", "math", al=3.0)]
    table = _block(_sections(_run("a", records)), "AL by category").table
    assert table is not None
    assert [c.name for c in table.columns] == ["drafter", "coding", "math", "mean over 2", "range"]
    assert table.rows == [["ngram_k3", 2.0, 3.0, 2.5, "2.00 – 3.00"]]


def test_unexplained_fidelity_gap_and_partial_run_are_warnings() -> None:
    run = _run("a", [_qualitative("none", "coding", al=1.0)], partial=True)
    warnings = _block(_sections(run), "Warnings").table
    assert warnings is not None
    assert [row[0] for row in warnings.rows] == ["partial run"] and warnings.row_flags == [BAD]
    html = render(Report.of([run]))
    assert 'role="alert"' in html and "partial run" in html


# --- two runs ----------------------------------------------------------------------------------


def test_cases_pair_by_id_then_by_drafter_method_and_deltas_are_later_minus_first() -> None:
    first = [_qualitative("none", c, al=1.0) for c in ("coding", "math")] + \
        [_qualitative("ngram:k=3", "coding", al=2.0, output_tps=100.0), _qualitative("ngram:k=3", "math", al=2.5)]
    later = [_qualitative("none", "coding", al=1.0), _qualitative("ngram:k=5", "coding", al=2.6, output_tps=80.0)]
    comparison = Report.of([_run("k3", first), _run("k5", later)]).comparisons[0]
    assert comparison.matched_by == {"case id": 1, "same labels and drafter method": 1}
    pair = next(p for p in comparison.pairs if p.reference.case.drafter.id == "ngram_k3")
    assert pair.other.case.drafter.id == "ngram_k5"
    assert pair.delta("AL").change == pytest.approx(0.6)
    assert pair.delta("output TPS").relative == pytest.approx(-0.2)
    assert sorted(r.case_id for r in comparison.only_reference) == ["ngram_k3-math-1", "none-math-1"]
    sections = _sections(_run("k3", first), _run("k5", later))
    delta = _block(sections, "Δ AL by category").table
    assert delta is not None and delta.rows[0][0] == "ngram_k3 → ngram_k5"
    assert delta.rows[0][1] == pytest.approx(0.6)
    placed = _block(sections, "Warnings").table
    assert placed is not None and any(row[1] == "not placed" and row[2] == 2 for row in placed.rows)


def test_two_drafters_of_one_method_are_not_guessed_between() -> None:
    first = [_qualitative("ngram:k=3", "coding"), _qualitative("ngram:k=4", "coding")]
    comparison = Report.of([_run("a", first), _run("b", [_qualitative("ngram:k=5", "coding")])]).comparisons[0]
    assert not comparison.pairs
    assert len(comparison.ambiguous) == 1 and "ngram_k3-coding-1" in comparison.ambiguous[0]


def test_runs_sharing_no_case_still_report_and_say_so() -> None:
    report = Report.of([_run("a", [_qualitative("none", "coding", al=1.0)]),
                        _run("b", [_qualitative("none", "math", al=1.0)])])
    html = render(report)
    assert "b shares no case with a" in html and 'role="alert"' in html
    assert "shares no case" in render(report, "md")


# --- files -------------------------------------------------------------------------------------


def test_results_files_of_every_kind_are_read(tmp_path: Path) -> None:
    records = with_speedups([_qualitative("none", "coding", al=1.0), _qualitative("ngram:k=3", "coding")])
    own = _write(tmp_path / "own.json", records)
    bench = _write(tmp_path / "bench.json", records, commit_info={"id": "abc"}, version="5.1.0")
    document = results_document(records)
    baseline = tmp_path / "base.json"
    atomic_write_json(baseline, {"speedbench_baseline_schema": 1, "record_schema": 2, "created": "2025-01-01",
                                 "fingerprint": {"cpu_model": "Some CPU", "gpus": ["H100"]},
                                 "benchmarks": document["benchmarks"]})
    report = load_report([own, bench, baseline])
    assert [r.kind for r in report.runs] == ["speedbench results", "pytest-benchmark JSON", "baseline"]
    assert [r.label for r in report.runs] == ["own", "bench", "base"]
    assert all(c.matched_by == {"case id": 2} for c in report.comparisons)
    fingerprint = _block(_sections(*report.runs), "Runs").table
    assert fingerprint is not None
    hardware = next(row for row in fingerprint.rows if row[0] == "hardware")
    assert "Some CPU" in hardware[3] and "H100" in hardware[3]


@pytest.mark.parametrize(("content", "said"), [
    ("not json", "not JSON"),
    ("[1, 2]", "not a speedbench results file"),
    ('{"machine_info": {}}', "not a speedbench results file"),
    ('{"benchmarks": [{"name": "t", "extra_info": {}}], "commit_info": {}}', "holds no speedbench records"),
    ('{"speedbench_record_schema": 1, "benchmarks": []}', "record schema 1"),
    ('{"benchmarks": [{"extra_info": {"speedbench": {"schema": 1}}}]}', "record schema 1"),
    ('{"benchmarks": [{"extra_info": {"speedbench": {"schema": 2, "case": {}}}}]}', "not a speedbench record"),
    ('{"speedbench_baseline_schema": 1, "record_schema": 3, "benchmarks": []}', "record schema 3"),
])
def test_bad_input_is_a_clear_error_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     content: str, said: str) -> None:
    path = tmp_path / "input.json"
    path.write_text(content)
    with pytest.raises(ReportInputError, match=re.escape(said)) as info:
        load_report([path])
    assert str(path) in str(info.value)
    assert main(["report", str(path), "-o", str(tmp_path / "out.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("speedbench report: error: ") and said in err and "Traceback" not in err
    assert not (tmp_path / "out.html").exists()


def test_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope.json")]) == 2
    assert f"{tmp_path / 'nope.json'}: cannot read it" in capsys.readouterr().err


# --- the page ----------------------------------------------------------------------------------


def test_html_is_self_contained_with_unique_ids(tmp_path: Path) -> None:
    records = with_speedups([_qualitative(d, c) for d in ("none", "ngram:k=3", "draft:k=4") for c in ("coding", "math")])
    path = tmp_path / "r.html"
    assert main(["report", str(_write(tmp_path / "a.json", records)), str(_write(tmp_path / "b.json", records)),
                 "-o", str(path)]) == 0
    html = path.read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\((?!#)", html)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)) and len(ids) > 20
    references = set(re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', html))
    assert all(ref in set(ids) for pair in references for ref in pair if ref)
    # One colour per drafter in every figure: draft_k4's (Okabe-Ito orange) and ngram_k3's (sky blue).
    assert html.count("#e69f00") + html.count("#E69F00") > 2 and html.count("#56b4e9") + html.count("#56B4E9") > 2


# --- the gate in Markdown ------------------------------------------------------------------------


def _comparison(record: Record, status: str, metrics: int = 6) -> dict[str, Any]:
    names = ["AL", "AR"] + [f"pp[{i}]" for i in range(metrics - 2)]
    results = [MetricResult(name, "acceptance", status, 2.0, 1.5, -0.5, (-0.6, -0.4), 0.02, 1e-9, 1.0, 1e-8, n=12)
               for name in names]
    results.append(MetricResult("output TPS", "speed", "not comparable", note="only 2 rounds (need 6)", unit="tok/s"))
    return CaseComparison(record.case_id, record.case_id, "results/baselines/main.json",
                          status, results, ["a note"]).to_dict()


def test_markdown_names_every_regressed_case_within_a_comment() -> None:
    records = []
    for i in range(60):
        record = _qualitative("ngram:k=3", f"category{i}")
        records.append(record.with_sections({"comparison": _comparison(record, "regressed" if i % 2 else "unchanged")}))
    report = Report.of([_run("gate", records)])
    markdown = render(report, "md")
    assert len(markdown) <= COMMENT_LIMIT
    assert "❌ **regressed**: 60 cases, 30 regressed, 0 improved, 30 unchanged" in markdown
    for record in records[1::2]:
        assert f"**REGRESSED** `{record.case_id}`" in markdown
    assert "AL 2.000 -> 1.500: change -0.500" in markdown
    html = render(report)
    assert "Verdicts per case" in html and "Acceptance: change and its confidence interval" in html


def test_cli_writes_markdown_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = _qualitative("ngram:k=3", "coding")
    record = record.with_sections({"comparison": _comparison(record, "regressed")})
    path = _write(tmp_path / "gate.json", [record])
    assert main(["report", str(path), "--format", "md", "-o", "-", "--html-name", "report.html"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## speedbench report") and "Full report with figures: `report.html`" in out
    assert f"**REGRESSED** `{record.case_id}`" in out
    json.dumps(out)  # plain text, nothing binary
