"""The documentation: its strict build passes offline, its option reference is exactly the options
pytest knows, and the commands it shows name real make targets and real options."""
from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import docs_hooks


@functools.lru_cache(maxsize=1)
def _speedbench_options_in_help() -> frozenset[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    return frozenset(re.findall(r"^\s+(--speedbench-[a-z0-9-]+)", out, flags=re.MULTILINE))


def test_strict_build_passes_offline(tmp_path: Path) -> None:
    """mkdocs --strict fails on a broken link, a missing page or anchor; no network is used (fonts off)."""
    env = {"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "no_proxy": "*", "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    options_page = (tmp_path / "site" / "reference" / "options" / "index.html").read_text()
    assert "--speedbench-drafter" in options_page and "speedbench_drafter" in options_page
    assert "fonts.googleapis.com" not in (tmp_path / "site" / "index.html").read_text()


def test_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    """The strict build can fail: a copy of the docs with one dead link does not build."""
    docs = tmp_path / "docs"
    subprocess.run(["cp", "-r", str(ROOT / "docs"), str(docs)], check=True)
    (docs / "index.md").write_text((docs / "index.md").read_text() + "\nSee [nowhere](no-such-page.md).\n")
    config = (ROOT / "mkdocs.yml").read_text().replace("tools/docs_hooks.py", str(ROOT / "tools" / "docs_hooks.py"))
    (tmp_path / "mkdocs.yml").write_text(config)
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=tmp_path, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode != 0
    assert "no-such-page.md" in result.stdout + result.stderr


def test_option_reference_lists_exactly_what_pytest_help_prints() -> None:
    documented = {f"--{option.name}" for _, option in docs_hooks.all_options()}
    assert documented == _speedbench_options_in_help()


def test_option_reference_rows_carry_ini_key_type_default_and_help() -> None:
    page = docs_hooks.options_markdown()
    for _, option in docs_hooks.all_options():
        row = next(line for line in page.splitlines() if line.startswith(f"| `--{option.name}`"))
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert cells[1] == f"`{option.dest}`"
        assert cells[2] and cells[4], row


def test_record_reference_lists_every_field() -> None:
    import dataclasses

    from speedbench_plugin.record import Speed

    page = docs_hooks.record_markdown()
    for field in dataclasses.fields(Speed):
        assert f"| `{field.name}` |" in page
    assert "| `ttft_median_s` | `float | None` | seconds |" in page.replace("\\|", "|")


_NEEDS_AN_EARLIER_STEP = {"--speedbench-compare", "--speedbench-multiturn", "--speedbench-resume",
                          "--speedbench-dynamic-table"}


def _shown_commands() -> list[tuple[str, str]]:
    """(file, command) for every shell command in a fenced bash/sh block of README.md and docs/."""
    found: list[tuple[str, str]] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", path.read_text(), flags=re.DOTALL):
            for command in block.replace("\\\n", " ").splitlines():
                command = command.split(" #")[0].strip()
                if command and not command.startswith("#"):
                    found.append((str(path.relative_to(ROOT)), command))
    return found


def test_shown_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, flags=re.MULTILINE))
    shown = [(where, command) for where, command in _shown_commands() if command.startswith("make ")]
    assert shown
    for where, command in shown:
        target = shlex.split(command)[1]
        if "=" not in target:
            assert target in targets, f"{where}: {command!r} names no Makefile target"


@pytest.mark.parametrize("where,command", [c for c in _shown_commands() if "pytest benches" in c[1]])
def test_shown_pytest_commands_are_accepted(where: str, command: str) -> None:
    """Each `pytest benches ...` the docs show uses options pytest knows; those that need no model or
    file from elsewhere are collected for real (pytest parses and validates every option value)."""
    for option in re.findall(r"(--speedbench-[a-z0-9-]+)", command):
        assert option in _speedbench_options_in_help(), f"{where}: {command!r} uses {option}, unknown to pytest"
    args = shlex.split(command)
    args = args[next(i for i, arg in enumerate(args) if arg.endswith("pytest")) + 1:]
    if any(arg.startswith(("/", "results/")) or "=/" in arg or "PATH" in arg or "$" in arg for arg in args):
        return  # names a model, server or run folder that exists only on the reader's machine
    if any(arg in _NEEDS_AN_EARLIER_STEP for arg in args):
        return  # reads what an earlier command on the same page made (a baseline, a recorded reference)
    result = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q", "-p", "no:cacheprovider"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{where}: {command!r}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
