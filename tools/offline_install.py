"""Install the suite into the running Python offline, without pip's build step: a ``.pth`` that puts
this checkout on ``sys.path`` and a ``dist-info`` with the package's entry points (the pytest plugins
and the engine registry), which is what ``pip install --no-deps -e .`` leaves behind. For machines
that have the dependencies (vLLM, torch, pytest, ...) but no network and perhaps no recent
setuptools: ``make install INSTALL=system`` and ``VENV=none`` run it. Standard library only.
"""
from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _pyproject() -> dict[str, object]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            sys.exit("offline_install.py needs Python >= 3.11 (tomllib) or the tomli package")
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    project: dict[str, object] = data["project"]
    return project


def entry_points_txt(entry_points: dict[str, dict[str, str]]) -> str:
    lines = []
    for group, items in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in items.items()]
        lines.append("")
    return "\n".join(lines)


def install(site: Path) -> Path:
    project = _pyproject()
    name, version = str(project["name"]), str(project["version"])
    site.mkdir(parents=True, exist_ok=True)
    for old in site.glob(f"{name}-*.dist-info"):  # an earlier install of another version
        for child in old.iterdir():
            child.unlink()
        old.rmdir()
    (site / f"__editable__.{name}.pth").write_text(f"{REPO}\n", encoding="utf-8")
    dist = site / f"{name}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    entry_points = project.get("entry-points") or {}
    assert isinstance(entry_points, dict)
    (dist / "entry_points.txt").write_text(entry_points_txt(entry_points), encoding="utf-8")
    (dist / "INSTALLER").write_text("speedbench tools/offline_install.py\n", encoding="utf-8")
    (dist / "RECORD").write_text("", encoding="utf-8")
    return dist


def main() -> int:
    dist = install(Path(sysconfig.get_paths()["purelib"]))
    print(f"speedbench: {REPO} installed offline for {sys.executable} ({dist})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
