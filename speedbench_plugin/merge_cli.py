"""``python -m speedbench_plugin merge``: the command line of :mod:`speedbench_plugin.merge` and
:mod:`speedbench_plugin.merge_gate`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from speedbench_plugin.journal import JournalError
from speedbench_plugin.merge import (
    DUPLICATES_NAME,
    REPORT_NAME,
    Merged,
    MergeError,
    merge_runs,
    write_outputs,
)
from speedbench_plugin.merge_gate import GateInputError, judge_merged, save_baseline, shard_hardware
from speedbench_plugin.report import ReportInputError, load_report, write_report
from speedbench_plugin.reports import RESULTS_NAME

# --- the command ------------------------------------------------------------------------------


def add_merge_parser(sub: Any) -> None:
    merge = sub.add_parser(
        "merge", help="join the run folders of a sharded session into one results file, report and gate verdict",
        description="Join run folders written by --speedbench-shard I/N (one per shard) into one results.json, one "
                    "pytest-benchmark JSON and one report; with --compare, judge the joined records against a baseline "
                    "(exit 1 when a case regressed).")
    merge.add_argument("runs", nargs="+", type=Path, help="the shards' run folders (results/<run>/)")
    merge.add_argument("--out", type=Path, required=True, help="folder for the merged outputs")
    merge.add_argument("--compare", help="a baseline (--speedbench-save-baseline) to judge the merged records against")
    merge.add_argument("--compare-strict", action="store_true", help="with --compare: fail when nothing was judged")
    merge.add_argument("--compare-match", choices=("id", "drafter-method"), default="id",
                       help="how cases meet their baseline case (as --speedbench-compare-match)")
    merge.add_argument("--save-baseline", type=Path, help="also write the merged records as a baseline here")
    merge.add_argument("--allow-mismatch", action="store_true",
                       help="join folders whose fingerprints differ (the differences are recorded in results.json)")
    merge.add_argument("--no-report", action="store_true", help="skip the HTML report")


def run_merge(args: argparse.Namespace) -> int:
    try:
        merged = merge_runs(args.runs, args.allow_mismatch)
        verdict = judge_merged(merged, args.compare, args.compare_match, args.compare_strict) if args.compare else None
        if verdict is not None:
            merged.records = verdict.records
        written = write_outputs(merged, args.out)
        if args.save_baseline:
            written.append(save_baseline(merged.records, args.save_baseline, shard_hardware(merged)))
    except (MergeError, JournalError, GateInputError) as exc:
        print(f"speedbench merge: error: {exc}", file=_stderr())
        return 2
    except OSError as exc:
        print(f"speedbench merge: error: cannot write under {args.out}: {exc}", file=_stderr())
        return 2
    print(f"speedbench merge: {len(merged.records)} case(s) from {len(merged.runs)} run folder(s) -> "
          + ", ".join(str(p) for p in written))
    for line in _notes(merged):
        print(f"speedbench merge: {line}")
    if not args.no_report and merged.records:
        try:
            target = write_report(load_report([args.out / RESULTS_NAME], None), args.out / REPORT_NAME)
            print(f"speedbench merge: report {target}")
        except (ReportInputError, OSError) as exc:
            print(f"speedbench merge: the report could not be written: {exc}", file=_stderr())
    if verdict is not None:
        for line in verdict.lines:
            print(line)
        return verdict.exit_code
    return 0


def _notes(merged: Merged) -> list[str]:
    lines = []
    if merged.duplicates:
        lines.append(f"{len(merged.duplicates)} case(s) in more than one folder (one kept): {', '.join(merged.duplicates[:5])}"
                     + (f"; {len(merged.conflicting)} differing copies kept in {DUPLICATES_NAME}" if merged.conflicting else ""))
    if merged.missing_shards:
        lines.append(f"shard(s) not given: {', '.join(merged.missing_shards)}")
    if merged.missing:
        lines.append(f"{len(merged.missing)} planned case(s) missing: {', '.join(merged.missing[:5])}")
    if merged.mismatches:
        lines.append("joined despite differences (--allow-mismatch): " + "; ".join(merged.mismatches))
    if merged.partial_reason:
        lines.append(f"PARTIAL: {merged.partial_reason}")
    return lines


def _stderr() -> TextIO:
    return sys.stderr
