"""The session's settings: the lead plugin's options (as data) read and validated once."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from speedbench_plugin import options as o
from speedbench_plugin.data.schema import QUALITATIVE_CATEGORIES
from speedbench_plugin.drafters import DrafterSpec, DrafterSpecError
from speedbench_plugin.metrics_conventions import AL_CONVENTIONS
from speedbench_plugin.rundir import RUN_DIR

if TYPE_CHECKING:
    from speedbench_plugin.multiturn import ReferenceTurns

DEFAULT_DRAFTERS = ("none", "ngram:k=3", "draft:k=3")


def _drafters(raw: Any, name: str) -> tuple[DrafterSpec, ...]:
    specs = raw or list(DEFAULT_DRAFTERS)
    try:
        drafters = tuple(s if isinstance(s, DrafterSpec) else DrafterSpec.parse(str(s)) for s in specs)
    except DrafterSpecError as exc:
        raise pytest.UsageError(str(exc)) from None
    if len({d.id for d in drafters}) != len(drafters):
        raise pytest.UsageError(f"--{name}: the same drafter is given twice")
    for drafter in drafters:
        if drafter.model and not Path(drafter.model).is_dir():
            raise pytest.UsageError(f"--{name} {drafter}: no such model directory {drafter.model!r}")
    return drafters


MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def _model_dir(raw: Any, name: str) -> str | None:
    if raw is None or raw == "":
        return None
    folder = Path(str(raw))
    if not folder.is_dir():
        raise pytest.UsageError(f"--{name} {raw!r}: no such model directory")
    if not any((folder / file).is_file() for file in MODEL_FILES):
        raise pytest.UsageError(f"--{name} {raw!r}: not a Hugging Face model directory (none of "
                                f"{', '.join(MODEL_FILES)} is there); give the folder that holds the model's "
                                "config.json and tokenizer")
    return str(raw)


def _categories(raw: Any, name: str) -> tuple[str, ...] | None:
    """Known qualitative categories only: checked here, before anything is collected or started."""
    categories = o.words(raw, name)
    unknown = sorted(set(categories or ()) - set(QUALITATIVE_CATEGORIES))
    if unknown:
        raise pytest.UsageError(f"--{name}: unknown categor{'y' if len(unknown) == 1 else 'ies'} "
                                f"{', '.join(unknown)}; known: {', '.join(QUALITATIVE_CATEGORIES)}")
    return categories


def _temperature(raw: Any, name: str) -> float:
    return float(o.number(0.0)(raw, name))


ENGINE = o.Option("speedbench-engine", "engine name from the speedbench.engines registry", "vllm", preset_key="engine")
MODEL = o.Option("speedbench-model", "target model: a Hugging Face model directory (default: embedded SmolLM2-135M)",
                 kind=_model_dir, preset_key="model")
DRAFTER = o.Option(
    "speedbench-drafter",
    "drafter spec, repeatable: none, ngram:k=3[,max=3,min=1], draft:k=3[,model=PATH,layers=N,vocab=N], "
    "eagle3:k=3,model=PATH[,vocab=N], eagle:k=3,model=PATH, mtp:k=3 (vocab=N: prune the draft vocabulary "
    "to the N most frequent tokens; default: none, ngram:k=3, draft:k=3)",
    kind=_drafters, multiple=True, preset_key="drafters",
)
CONCURRENCY = o.Option("speedbench-concurrency", "concurrent conversations, a comma list for sweeps", "1",
                       kind=o.positive_ints, preset_key="concurrency")
NUM_REQUESTS = o.Option("speedbench-num-requests",
                        "requests: qualitative, in total round-robin over categories; throughput, per cell",
                        kind=o.optional_positive_int, preset_key="num_requests")
MAX_TOKENS = o.Option("speedbench-max-tokens", "output tokens per request", "128", kind=o.positive_int,
                      preset_key="max_tokens")
TEMPERATURE = o.Option("speedbench-temperature", "sampling temperature (0 = greedy)", "0", kind=_temperature,
                       preset_key="temperature")
ENGINE_ARGS = o.Option("speedbench-engine-args", "KEY=VALUE passed to the engine, repeatable (values parsed as JSON)",
                       kind=o.key_values, multiple=True, preset_key="engine_args")
ROUNDS = o.Option("speedbench-rounds", "measured rounds per case", "1", kind=o.positive_int, preset_key="rounds")
CATEGORIES = o.Option("speedbench-categories", "comma list of qualitative categories to run (default all)",
                      kind=_categories, preset_key="categories")
DATASET = o.Option("speedbench-dataset", "speed:qualitative, speed:throughput_1k.. or a .jsonl/.parquet path",
                   preset_key="dataset")
ENDPOINT = o.Option("speedbench-endpoint", "URL of an OpenAI-compatible server (engine openai)", preset_key="endpoint")
PRESET = o.Option("speedbench-preset", "a preset name or YAML file (engine, model, drafters, args)")
RESULTS_JSON = o.Option("speedbench-json", "also write the suite's own results JSON here (atomic)")
CROSS_ENGINE = o.Option("speedbench-cross-engine", "a second engine to run the same prompts on (test_cross_engine)")
PROGRESS = o.Option("speedbench-progress", "progress bars: auto, on or off", "auto", kind=o.choice("auto", "on", "off"))
STRICT_FIDELITY = o.Option(
    "speedbench-strict-fidelity",
    "fail a case whose stream and engine counters disagree beyond what end-of-request cuts and merged steps explain",
    "false", kind=o.flag, is_flag=True,
)
CLIENT_BOUND = o.Option(
    "speedbench-client-bound-efficiency",
    "a case whose measured TPS is below this share of the engine's own ceiling is flagged client-bound",
    "0.9", kind=o.number(0.0, 1.0),
)

CEILING = o.Option(
    "speedbench-ceiling",
    "also run each case's prompts through the engine's own non-streaming path and report engine_ceiling_tps and "
    "harness_efficiency: auto (throughput split), on (every split), off", "auto", kind=o.choice("auto", "on", "off"),
)
AL_CONVENTION = o.Option(
    "speedbench-al-convention",
    "whose acceptance length the table's AL column shows: speed-bench (the headline), specdec-bench, vllm, aiperf "
    "or aiperf-token-weighted (README \"AL conventions\"; the record and report hold all of them)",
    "speed-bench", kind=o.choice(*AL_CONVENTIONS),
)


def _count(raw: Any, name: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise pytest.UsageError(f"--{name} {raw!r}: not a whole number >= 0") from None
    if value < 0:
        raise pytest.UsageError(f"--{name} {raw!r}: not a whole number >= 0")
    return value


def _limit(raw: Any, name: str) -> float | None:
    """Seconds; 0 means no limit (None)."""
    value = float(o.number(0.0)(raw, name))
    return value or None


# Reliability: what a fault may cost. Request and round limits fail the requests past them (what had
# streamed is kept); the engine is then checked and restarted if it does not answer.
REQUEST_TIMEOUT = o.Option(
    "speedbench-request-timeout",
    "seconds a request may go without a new token (the first included) before it fails; 0: no limit", "300",
    kind=_limit,
)
REQUEST_TOTAL_TIMEOUT = o.Option("speedbench-request-total-timeout",
                                 "seconds a whole request may take before it fails; 0: no limit", "0", kind=_limit)
ROUND_TIMEOUT = o.Option(
    "speedbench-round-timeout",
    "seconds a measured round may take: requests still running then fail, later ones are not sent; 0: no limit",
    "0", kind=_limit,
)
ENGINE_START_TIMEOUT = o.Option("speedbench-engine-start-timeout",
                                "seconds an engine may take to start; 0: no limit", "1800", kind=_limit)
ENGINE_CHECK_TIMEOUT = o.Option(
    "speedbench-engine-check-timeout",
    "seconds the health check after a failed case waits for a short request before the engine counts as down",
    "60", kind=_limit,
)
ENGINE_RESTARTS = o.Option(
    "speedbench-engine-restarts",
    "restarts of an engine that stops answering, for the remaining cases; past them those cases error", "1",
    kind=_count,
)
REQUEST_RETRIES = o.Option(
    "speedbench-request-retries",
    "re-sends of a request that provably never started (connection refused, HTTP 429/503 before any byte); "
    "waits follow the server's Retry-After", "2", kind=_count,
)
RESUME = o.Option(
    "speedbench-resume",
    "RUN_DIR of an interrupted run: run only the cases missing from its journal (same configuration), "
    "then write the complete outputs",
)
MULTITURN = o.Option(
    "speedbench-multiturn",
    "later turns of a multi-turn question follow: own (each engine's own answers, the default) or reference (fixed "
    "answers recorded once, so every engine gets the same token ids on every turn)", "own", kind=o.choice("own", "reference"),
)
MULTITURN_REFERENCE = o.Option(
    "speedbench-multiturn-reference",
    "the reference that --speedbench-multiturn reference replays: a name in the cache or a file path (default: the "
    "one named after the model; record one with `python -m speedbench_plugin multiturn record`)",
)

OPTIONS: tuple[o.Option, ...] = (
    ENGINE, MODEL, DRAFTER, CONCURRENCY, NUM_REQUESTS, MAX_TOKENS, TEMPERATURE, ENGINE_ARGS, ROUNDS, CATEGORIES,
    DATASET, ENDPOINT, PRESET, RESULTS_JSON, CROSS_ENGINE, PROGRESS, STRICT_FIDELITY, CLIENT_BOUND, RUN_DIR,
    CEILING, REQUEST_TIMEOUT, REQUEST_TOTAL_TIMEOUT, ROUND_TIMEOUT, ENGINE_START_TIMEOUT, ENGINE_CHECK_TIMEOUT,
    ENGINE_RESTARTS, REQUEST_RETRIES, RESUME, MULTITURN, MULTITURN_REFERENCE, AL_CONVENTION,
)


def _preset(name: str | None) -> Mapping[str, Any]:
    """A preset's values become defaults: the command line and ini still win."""
    if not name:
        return {}
    from speedbench_plugin.presets import PresetError, load_preset

    try:
        return load_preset(name)
    except PresetError as exc:
        raise pytest.UsageError(str(exc)) from None


def _tp_arg(engine_args: Mapping[str, Any]) -> Any:
    """Tensor parallelism as vLLM and TensorRT-LLM name it, or as SGLang does (``tp_size``)."""
    return engine_args.get("tensor_parallel_size", engine_args.get("tp_size", 1))


@dataclass(frozen=True)
class Settings:
    engine: str
    model: str | None
    drafters: tuple[DrafterSpec, ...]
    concurrency: tuple[int, ...]
    num_requests: int | None
    max_tokens: int
    temperature: float
    engine_args: dict[str, Any] = field(default_factory=dict)
    rounds: int = 1
    categories: tuple[str, ...] | None = None
    dataset: str | None = None
    endpoint: str | None = None
    results_json: str | None = None
    progress: str = "auto"
    cross_engine: str | None = None
    strict_fidelity: bool = False
    client_bound_efficiency: float = 0.9
    ceiling: str = "auto"
    explicit: frozenset[str] = frozenset()  # options the user set (command line, ini or preset)
    min_per_category: int | None = None  # when the suite picks the prompt count, at least this many
    request_timeout: float | None = 300.0  # limits: None = no limit
    request_total_timeout: float | None = None
    round_timeout: float | None = None
    engine_start_timeout: float | None = 1800.0
    engine_check_timeout: float | None = 60.0
    engine_restarts: int = 1
    request_retries: int = 2
    resume: str | None = None
    multiturn: str = "own"
    multiturn_reference: ReferenceTurns | None = None  # loaded and checked once, in reference mode
    al_convention: str = "speed-bench"  # the table's AL column (metrics.AL_CONVENTIONS)

    @property
    def tensor_parallel_size(self) -> int:
        tp = _tp_arg(self.engine_args)
        return tp if isinstance(tp, int) and not isinstance(tp, bool) else 1

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        preset = _preset(o.value(config, PRESET))

        def get(option: o.Option) -> Any:
            return o.value(config, option, preset)

        explicit = frozenset(option.name for option in OPTIONS if o.is_set(config, option, preset))
        engine_args = get(ENGINE_ARGS)
        tp = _tp_arg(engine_args)
        if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
            raise pytest.UsageError(f"--speedbench-engine-args tensor_parallel_size={tp!r}: not a positive integer")
        from speedbench_plugin.multiturn import ReferenceUnusable, session_reference

        try:
            reference = session_reference(get(MULTITURN), get(MULTITURN_REFERENCE), get(MODEL), get(DATASET),
                                          MULTITURN.name, MULTITURN_REFERENCE.name)
        except ReferenceUnusable as exc:
            raise pytest.UsageError(str(exc)) from None
        return cls(
            engine=str(get(ENGINE)),
            model=get(MODEL),
            drafters=get(DRAFTER),
            concurrency=get(CONCURRENCY),
            num_requests=get(NUM_REQUESTS),
            max_tokens=get(MAX_TOKENS),
            temperature=get(TEMPERATURE),
            engine_args=engine_args,
            rounds=get(ROUNDS),
            categories=get(CATEGORIES),
            dataset=get(DATASET),
            endpoint=get(ENDPOINT),
            results_json=get(RESULTS_JSON),
            progress=get(PROGRESS),
            cross_engine=get(CROSS_ENGINE),
            strict_fidelity=get(STRICT_FIDELITY),
            client_bound_efficiency=get(CLIENT_BOUND),
            ceiling=get(CEILING),
            explicit=explicit,
            request_timeout=get(REQUEST_TIMEOUT),
            request_total_timeout=get(REQUEST_TOTAL_TIMEOUT),
            round_timeout=get(ROUND_TIMEOUT),
            engine_start_timeout=get(ENGINE_START_TIMEOUT),
            engine_check_timeout=get(ENGINE_CHECK_TIMEOUT),
            engine_restarts=get(ENGINE_RESTARTS),
            request_retries=get(REQUEST_RETRIES),
            resume=get(RESUME),
            multiturn=get(MULTITURN),
            multiturn_reference=reference,
            al_convention=get(AL_CONVENTION),
        )


SETTINGS_KEY = pytest.StashKey[Settings]()


def settings_of(config: pytest.Config) -> Settings:
    return config.stash[SETTINGS_KEY]
