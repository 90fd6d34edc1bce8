"""Which CUDA vLLM `make install` puts in the venv on a GPU machine (standard library only: it runs
before anything is installed).

``--venv-flags`` prints the flags for ``python -m venv``; ``--requirement`` the pip requirement added to
``.[gpu,dev]`` (empty: the extra's range) and, on stderr, why.
Where the Python that builds the venv already has a torch that one vLLM release of the supported
range pins exactly, that release is chosen and the venv sees the system's packages
(``--system-site-packages``), so the machine's torch and its CUDA build are used as installed.
Otherwise the range of the `gpu` extra is left to pip (it installs the torch that vLLM pins).
The reason goes to stderr.
"""
from __future__ import annotations

import importlib.metadata as md
import re
import sys

# torch that each CUDA vLLM release of the `gpu` extra pins (`Requires-Dist: torch==...`), read from
# the wheels' metadata on PyPI (`pip install --dry-run --no-deps --report - vllm==X`); newest first.
# Keep in step with the `gpu` extra in pyproject.toml.
VLLM_TORCH = {
    "0.32.0": "2.13.0",  # Requires-Python >= 3.11
    "0.31.0": "2.13.0",
    "0.30.0": "2.13.0",
    "0.29.0": "2.13.0",
    "0.28.0": "2.13.0",
    "0.27.1": "2.13.0",
    "0.27.0": "2.13.0",
    "0.26.0": "2.11.0",
}
NEEDS_PYTHON = {"0.32.0": (3, 11)}


def installed_torch() -> str | None:
    try:
        return md.version("torch")
    except md.PackageNotFoundError:
        return None


def choose(torch: str | None, python: tuple[int, int]) -> tuple[str, str, str]:
    """(venv flags, extra requirements, why)."""
    if torch is None:
        return "", "", "no torch installed here: pip installs the newest vLLM of the gpu extra's range and the torch it pins"
    public = re.sub(r"\+.*$", "", torch)
    for vllm, pinned in VLLM_TORCH.items():
        if pinned == public and python >= NEEDS_PYTHON.get(vllm, (3, 10)):
            if "+cpu" in torch:
                return "", f"vllm=={vllm}", (f"torch {torch} here is a CPU build: the venv gets its own CUDA torch "
                                              f"{pinned} with vllm=={vllm}")
            return "--system-site-packages", f"vllm=={vllm}", (f"torch {torch} is installed here: vllm=={vllm} pins "
                                                               f"torch=={pinned}, so the venv uses the installed one")
    return "", "", (f"torch {torch} here is pinned by no vLLM release of the gpu extra ({', '.join(VLLM_TORCH)}): "
                    "the venv gets its own torch, the one the newest vLLM in range pins")


def main(argv: list[str]) -> int:
    if argv not in (["--venv-flags"], ["--requirement"]):
        print("usage: cuda_vllm.py --venv-flags | --requirement", file=sys.stderr)
        return 2
    flags, requirement, why = choose(installed_torch(), (sys.version_info[0], sys.version_info[1]))
    if argv == ["--venv-flags"]:
        print(flags)
    else:
        print(f"speedbench: {why}", file=sys.stderr)
        print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
