"""Drafter specs: ``none``, ``ngram:k=3[,max=3,min=1]``, ``draft:k=3[,model=PATH,layers=N,vocab=N]``,
``eagle3:k=3,model=PATH[,vocab=N]``, ``eagle:k=3,model=PATH``, ``mtp:k=3``.

``vocab=N`` prunes the drafter's vocabulary to the N most frequent tokens of a reference corpus
(:mod:`speedbench_plugin.vocab`); only engines that can apply it exactly accept it."""
from __future__ import annotations

from dataclasses import dataclass, field

METHODS = ("none", "ngram", "draft", "eagle", "eagle3", "mtp")
_ALLOWED_KEYS = {
    "none": set(),
    "ngram": {"k", "max", "min"},
    "draft": {"k", "model", "layers", "vocab"},
    "eagle": {"k", "model"},
    "eagle3": {"k", "model", "vocab"},
    "mtp": {"k"},
}
_NEEDS_MODEL = {"eagle", "eagle3"}
_INT_KEYS = {"k", "max", "min", "layers", "vocab"}
DEFAULT_K = 3
# Why an engine cannot prune a drafter's vocabulary, where the reason is known.
_NO_DRAFT_VOCAB = {
    "vllm": "vLLM has no draft-vocabulary setting for its draft_model method, and EAGLE3 checkpoints "
            "carry their own fixed hot-token map (d2t) that is not user-settable",
}


class DrafterSpecError(ValueError):
    pass


@dataclass(frozen=True)
class DrafterSpec:
    method: str
    k: int = 0
    model: str | None = None
    options: tuple[tuple[str, int], ...] = field(default=())

    @property
    def enabled(self) -> bool:
        return self.method != "none"

    def option(self, key: str, default: int | None = None) -> int | None:
        return dict(self.options).get(key, default)

    @property
    def id(self) -> str:
        """Stable, readable id used in test ids and baselines: ``ngram_k3``, ``ngram_k3_min2``."""
        if not self.enabled:
            return "none"
        parts = [self.method, f"k{self.k}"]
        parts += [f"{key}{value}" for key, value in self.options]
        if self.model:
            parts.append("custom")
        return "_".join(parts)

    def __str__(self) -> str:
        if not self.enabled:
            return "none"
        items = [f"k={self.k}"] + [f"{key}={value}" for key, value in self.options]
        if self.model:
            items.append(f"model={self.model}")
        return f"{self.method}:{','.join(items)}"

    def with_k(self, k: int) -> DrafterSpec:
        return DrafterSpec(self.method, k, self.model, self.options)

    @classmethod
    def parse(cls, spec: str) -> DrafterSpec:
        text = spec.strip()
        method, _, rest = text.partition(":")
        method = method.strip().lower()
        if method not in METHODS:
            raise DrafterSpecError(
                f"--speedbench-drafter {spec!r}: unknown method {method!r}; known: {', '.join(METHODS)}"
            )
        values: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not value:
                raise DrafterSpecError(f"--speedbench-drafter {spec!r}: {item!r} is not KEY=VALUE")
            if key not in _ALLOWED_KEYS[method]:
                allowed = ", ".join(sorted(_ALLOWED_KEYS[method])) or "none"
                raise DrafterSpecError(
                    f"--speedbench-drafter {spec!r}: {method} takes no {key!r} (allowed: {allowed})"
                )
            values[key] = value
        ints: dict[str, int] = {}
        for key in _INT_KEYS & values.keys():
            try:
                ints[key] = int(values[key])
            except ValueError:
                raise DrafterSpecError(f"--speedbench-drafter {spec!r}: {key} must be an integer") from None
            if ints[key] < 1:
                raise DrafterSpecError(f"--speedbench-drafter {spec!r}: {key} must be a positive integer")
        if method == "none":
            return cls("none")
        if method in _NEEDS_MODEL and "model" not in values:
            raise DrafterSpecError(f"--speedbench-drafter {spec!r}: {method} needs model=PATH")
        if "max" in ints and "min" in ints and ints["min"] > ints["max"]:
            raise DrafterSpecError(f"--speedbench-drafter {spec!r}: min must not exceed max")
        k = ints.pop("k", DEFAULT_K)
        options = tuple(sorted(ints.items()))
        return cls(method, k, values.get("model"), options)


def check_draft_vocab_supported(drafter: DrafterSpec, engine: str, supported: bool) -> None:
    """``vocab=N`` on an engine that cannot apply it exactly is an error, never silently ignored."""
    n = drafter.option("vocab")
    if n is None or supported:
        return
    why = _NO_DRAFT_VOCAB.get(engine, f"the {engine} engine has no way to restrict a drafter's vocabulary")
    raise DrafterSpecError(
        f"--speedbench-drafter {drafter}: option vocab={n} cannot be applied by --speedbench-engine {engine} "
        f"({why}); run pruned-vocabulary drafting with --speedbench-engine hf"
    )
