"""``python -m speedbench_plugin report RESULTS... [-o report.html] [--format html|md]`` and
``python -m speedbench_plugin multiturn record [--engine vllm] [--model DIR] [--name NAME]`` and
``python -m speedbench_plugin history RESULTS... [-o history.html] [--format html|md]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _report(args: argparse.Namespace) -> int:
    from speedbench_plugin.report import ReportInputError, load_report, render, write_report

    fmt = args.format or ("md" if args.output and Path(args.output).suffix.lower() in (".md", ".markdown") else "html")
    try:
        report = load_report(args.results, args.label)
        if args.output == "-":
            sys.stdout.write(render(report, fmt, args.html_name))
            return 0
        target = Path(args.output or f"report.{fmt}")
        write_report(report, target, fmt, args.html_name)
    except ReportInputError as exc:
        print(f"speedbench report: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"speedbench report: error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"speedbench report: {target}")
    return 0


def _history(args: argparse.Namespace) -> int:
    from speedbench_plugin.history.load import history_runs
    from speedbench_plugin.history.page import render_history
    from speedbench_plugin.report import ReportInputError

    fmt = args.format or ("md" if args.output and Path(args.output).suffix.lower() in (".md", ".markdown") else "html")
    try:
        text = render_history(history_runs(args.results), fmt, args.html_name)
        if args.output == "-":
            sys.stdout.write(text)
            return 0
        from speedbench_plugin.cache import atomic_write_text

        target = Path(args.output or f"history.{fmt}")
        atomic_write_text(target, text)
    except ReportInputError as exc:
        print(f"speedbench history: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"speedbench history: error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"speedbench history: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speedbench_plugin", description="speedbench tools")
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser(
        "report", help="an HTML report (or a Markdown summary) from results files",
        description="One self-contained HTML report, or a Markdown summary for a GitHub job summary or pull-request "
                    "comment, from results files (--speedbench-json, --benchmark-json, baselines). Several files are "
                    "laid side by side: the first is the reference, the others are compared with it case by case.")
    report.add_argument("results", nargs="+", help="results files; the first is the reference")
    report.add_argument("-o", "--output", help="where to write (default report.html or report.md; '-' for stdout)")
    report.add_argument("--format", choices=("html", "md"), help="html (default) or md; .md output implies md")
    report.add_argument("--label", action="append", help="a name per results file, in order (default: file names)")
    report.add_argument("--html-name", help="Markdown only: name the HTML report it summarises")
    history = sub.add_parser(
        "history", help="every case across earlier runs: an HTML page (or a Markdown summary)",
        description="One self-contained HTML page, or a Markdown summary, of every case across earlier runs (results "
                    "files or run folders, any order): AL, AR, speed, TTFT and cost per token by run time, what changed, "
                    "the gate's interval per step and where a shift starts.")
    history.add_argument("results", nargs="+", help="results files or run folders")
    history.add_argument("-o", "--output", help="where to write (default history.html or history.md; '-' for stdout)")
    history.add_argument("--format", choices=("html", "md"), help="html (default) or md; .md output implies md")
    history.add_argument("--html-name", help="Markdown only: name the HTML page it summarises")
    from speedbench_plugin.multiturn_record import add_record_parser, run_record

    add_record_parser(sub)
    from speedbench_plugin.merge_cli import add_merge_parser, run_merge

    add_merge_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "multiturn":
        return run_record(args)
    if args.command == "history":
        return _history(args)
    if args.command == "merge":
        return run_merge(args)
    return _report(args)


if __name__ == "__main__":
    sys.exit(main())
