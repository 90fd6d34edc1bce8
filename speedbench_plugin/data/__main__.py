"""``python -m speedbench_plugin.data``: fetch sources, build the splits, show what is cached."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from speedbench_plugin.data.schema import DataError


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speedbench_plugin.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fetch = sub.add_parser("fetch-bigbench", help="download the BIG-bench sdist with pip and extract the pinned tasks")
    fetch.add_argument("--sdist", type=Path, help="use an already downloaded bigbench-1.0.0.tar.gz")
    fetch.add_argument("--optional", action="store_true",
                       help="when the sdist cannot be downloaded, say why and exit 0 (the split is then built "
                            "without BIG-bench); a bad --sdist or a checksum mismatch still fails")

    qual = sub.add_parser("build-qualitative", help="build the offline qualitative split (11 categories)")
    qual.add_argument("--per-category", type=int, default=80)
    qual.add_argument("--seed", type=int, default=0)
    qual.add_argument("--require-bigbench", action="store_true",
                      help="fail instead of building short categories when BIG-bench is not extracted")
    qual.add_argument("--reselect", action="store_true",
                      help="run the full diversity selection (embedding every candidate) instead of rebuilding "
                           "the recorded selection; it also runs when the corpora or the pinned embedders changed")

    rec = sub.add_parser("record-selection",
                         help="write the cached split's selection (ids and prompt sha256s) as the recorded selection")
    rec.add_argument("--out", type=Path, default=None, help="where to write it (default: the packaged selection.json)")

    thr = sub.add_parser("build-throughput", help="build exact-length throughput prompts for a model's tokenizer")
    thr.add_argument("--model", default="embedded",
                     help="model folder (its tokenizer and chat template are used), or 'embedded' for the suite's default model")
    thr.add_argument("--buckets", type=_ints, default=None, help="comma-separated token counts (default 1024,2048,8192,16384,32768)")
    thr.add_argument("--per-cell", type=int, default=None, help="prompts per bucket and tier (default 32)")
    thr.add_argument("--tiers", default=None, help="comma-separated subset of low_entropy,mixed,high_entropy,random")
    thr.add_argument("--seed", type=int, default=0)
    thr.add_argument("--reserve-output", type=int, default=None,
                     help="build a bucket only when bucket + this many output tokens fit the context (default 256)")

    sub.add_parser("status", help="print what is cached")
    args = parser.parse_args(argv)
    progress = True  # tqdm bars go to stderr
    try:
        if args.command == "fetch-bigbench":
            from speedbench_plugin.data.sources import SourceUnavailable, fetch_bigbench

            try:
                print(f"BIG-bench tasks in {fetch_bigbench(args.sdist, progress=progress)}")
            except SourceUnavailable as exc:
                if not args.optional or args.sdist is not None:
                    raise
                print(f"warning: {exc}", file=sys.stderr)
        elif args.command == "build-qualitative":
            from speedbench_plugin.data.qualitative import build_qualitative, summary_lines
            from speedbench_plugin.data.sources import bigbench_available

            if not bigbench_available():
                message = ("BIG-bench tasks are not extracted: qa and multilingual get no prompts and most "
                           "other categories come up short. Run `python -m speedbench_plugin.data fetch-bigbench` "
                           "first (or pass it the sdist with --sdist PATH).")
                if args.require_bigbench:
                    raise DataError(message)
                print(f"warning: {message}", file=sys.stderr)
            manifest = build_qualitative(args.per_category, args.seed, progress=progress, reselect=args.reselect)
            print("\n".join(summary_lines(manifest)))
        elif args.command == "record-selection":
            from speedbench_plugin.data import recorded
            from speedbench_plugin.data.io import qualitative_split_path, read_questions
            from speedbench_plugin.data.qualitative import manifest_path

            out = args.out or recorded.packaged_path()
            recorded.record_from_manifest(json.loads(manifest_path().read_text()),
                                         read_questions(qualitative_split_path()), out)
            print(f"recorded selection written to {out}")
        elif args.command == "build-throughput":
            from speedbench_plugin.data import throughput as tp

            model = args.model
            if model == "embedded":
                from speedbench_plugin.models import embedded_model

                model = str(embedded_model())
            kwargs = {"seed": args.seed, "progress": progress}
            if args.buckets:
                kwargs["buckets"] = args.buckets
            if args.per_cell:
                kwargs["per_cell"] = args.per_cell
            if args.tiers:
                kwargs["tiers"] = [t.strip() for t in args.tiers.split(",")]
            if args.reserve_output is not None:
                kwargs["reserve_output"] = args.reserve_output
            manifest = tp.build_throughput(model, **kwargs)
            print("\n".join(_throughput_lines(manifest)))
        else:
            _status()
    except (DataError, RuntimeError, OSError) as exc:  # OSError: e.g. ResultsWriteError on a full disk
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _throughput_lines(manifest: dict[str, Any]) -> list[str]:
    tok = manifest["tokenizer"]
    lines = [(f"throughput prompts for tokenizer {tok['key']} ({tok['model_path']}, context {tok['context_length']}), "
              f"built {manifest['built_at']}")]
    for bucket, info in sorted(manifest["buckets"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"  bucket {bucket:>6}: {info['rows']} prompts ({info['per_cell']} per tier x {', '.join(info['tiers'])}); "
                     f"{info['length_check']}; {info['build_seconds']} s")
    for bucket, reason in manifest.get("skipped_buckets", {}).items():
        lines.append(f"  bucket {bucket:>6}: skipped ({reason})")
    for name, why in manifest.get("fallbacks", {}).items():
        lines.append(f"  fallback {name}: {why}")
    return lines


def _status() -> None:
    from speedbench_plugin.data.io import data_dir, qualitative_split_path, throughput_dir
    from speedbench_plugin.data.qualitative import manifest_path, summary_lines
    from speedbench_plugin.data.sources import bigbench_available, bigbench_dir

    print(f"data cache: {data_dir()}")
    print(f"BIG-bench tasks: {'extracted in ' + str(bigbench_dir()) if bigbench_available() else 'not extracted (fetch-bigbench)'}")
    if manifest_path().exists() and qualitative_split_path().exists():
        print(_integrity_line(qualitative_split_path().parent, [qualitative_split_path().name],
                              "python -m speedbench_plugin.data build-qualitative"))
        print("\n".join(summary_lines(json.loads(manifest_path().read_text()))))
    else:
        print(f"qualitative split: not built ({qualitative_split_path()} missing; build-qualitative)")
    manifests = sorted(throughput_dir().glob("*/manifest.json")) if throughput_dir().exists() else []
    if not manifests:
        print("throughput prompts: none built (build-throughput --model PATH)")
    for path in manifests:
        try:
            manifest = json.loads(path.read_text())
            command = f"python -m speedbench_plugin.data build-throughput --model {manifest['tokenizer']['model_path']}"
            print(_integrity_line(path.parent, None, command))
            print("\n".join(_throughput_lines(manifest)))
        except (ValueError, KeyError, TypeError) as exc:
            print(f"CORRUPTED: {path}: unreadable ({exc!r}); rebuild with `make data` or build-throughput")


def _integrity_line(folder: Path, names: list[str] | None, command: str) -> str:
    """Each file against the sha256 its build recorded."""
    from speedbench_plugin.cache import CacheIntegrityError, verify_files

    try:
        verify_files(folder, names, command)
    except CacheIntegrityError as exc:
        return f"CORRUPTED: {exc}"
    return f"{folder}: files match their recorded sha256"


if __name__ == "__main__":
    sys.exit(main())
