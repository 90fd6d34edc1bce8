"""transformers reference engine (``--speedbench-engine hf``): batch size 1, no serving stack.

It is the suite's oracle for the lossless check: greedy output with a drafter must equal greedy
output without one, token for token. Drafters: ``none``, ``ngram`` (prompt lookup,
``generate(prompt_lookup_num_tokens=k, max_matching_ngram_size=max)``) and ``draft``
(``generate(assistant_model=...)``).

Acceptance is counted per verification step by wrapping the candidate generator's
``update_candidate_strategy(input_ids, scores, num_matches)``, which
``GenerationMixin._assisted_decoding`` calls once per step right after it has picked the
accepted tokens (transformers 5.x, ``generation/utils.py``): drafted = ``scores.shape[1] - 1``,
accepted = ``num_matches`` (already cut back at EOS / max length). The generator is created inside
``generate`` by ``_get_candidate_generator``; we wrap that method on the model *instance*, so no
transformers class is patched. If a future transformers stops calling either hook, the request
fails loudly instead of reporting zero acceptance.

Trap (transformers' assisted generation): the assistant's ``num_assistant_tokens``, ``num_assistant_tokens_schedule`` and
``assistant_confidence_threshold`` are read from the *assistant's* generation_config, with defaults
20 / "constant" / 0.4. A fixed draft length ``k`` needs ``num_assistant_tokens=k``, schedule
"constant" and threshold 0 set there, not on the target.

Pruned draft vocabulary (``draft:k=3,model=PATH,vocab=N``): a logits processor appended to the
candidate generator's own ``logits_processor`` list — the list ``_prepare_generation_args`` hands
to the *assistant's* ``generate`` — sets every token outside the kept set
(:mod:`speedbench_plugin.vocab`) to -inf before the assistant picks its draft. The target's
processors are a different list, so verification, and hence the output, is untouched.

Second trap, found here: SmolLM2's pad token equals ``<|im_end|>``; without an explicit attention
mask, ``generate`` masks every ``<|im_end|>`` in the prompt as padding whenever the EOS criterion is
off (``ignore_eos``), which changes the logits. Every call therefore passes an all-ones mask.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import (
    Chunk,
    Engine,
    EngineCapabilities,
    EngineConfig,
    EngineError,
    Sampling,
    SpecCounts,
    StepRecord,
    StreamResult,
)

SOURCE = "hf:update_candidate_strategy"
SUPPORTED = ("none", "ngram", "draft")
SOURCE_VOCAB_MASK = "hf:assistant_logits_processor"
# engine_args consumed here; anything else goes to from_pretrained for target and draft alike.
_OWN_ARGS = {"dtype", "device", "generate_kwargs"}


def generate_kwargs_for(drafter: DrafterSpec) -> dict[str, Any]:
    """The ``generate()`` keyword arguments a drafter needs (the assistant model is added apart)."""
    if drafter.method not in SUPPORTED:
        raise EngineError(
            f"hf engine: drafter {drafter.method!r} is not supported (supported: {', '.join(SUPPORTED)}); "
            "EAGLE/MTP heads need vLLM, SGLang or TensorRT-LLM"
        )
    if drafter.method == "ngram":
        minimum = drafter.option("min")
        if minimum not in (None, 1):
            # transformers tries n-gram sizes from max down to 1 and has no lower bound.
            raise EngineError(
                f"hf engine: ngram min={minimum} cannot be honoured; transformers' prompt lookup always "
                "falls back to 1-grams (use min=1 or omit it)"
            )
        # Without max=, use k like the vllm and sglang adapters (transformers' own default is 2), so
        # one drafter spec means one drafter on every engine.
        return {
            "prompt_lookup_num_tokens": drafter.k,
            "max_matching_ngram_size": drafter.option("max", drafter.k),
        }
    return {}


def assistant_generation_overrides(k: int) -> dict[str, Any]:
    """Settings for the assistant's own generation_config that make it draft exactly ``k`` tokens."""
    return {
        "num_assistant_tokens": k,
        "num_assistant_tokens_schedule": "constant",
        "assistant_confidence_threshold": 0.0,
    }


@dataclass
class StepRecorder:
    """Per-step (drafted, accepted) pairs for one request."""

    k: int
    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)

    def observe(self, drafted: int, accepted: int) -> None:
        self.drafted.append(int(drafted))
        self.accepted.append(int(accepted))

    def counts(self) -> SpecCounts:
        return counts_from_steps(self.drafted, self.accepted, self.k)


def counts_from_steps(drafted: Sequence[int], accepted: Sequence[int], k: int) -> SpecCounts:
    """SpecCounts from per-step arrays; steps that drafted nothing count as steps, not as drafts."""
    width = max([k, *drafted]) if drafted else k
    per_pos = [0] * width
    for n_acc in accepted:
        for i in range(n_acc):
            per_pos[i] += 1
    return SpecCounts(
        num_drafts=sum(1 for d in drafted if d > 0),
        num_draft_tokens=sum(drafted),
        num_accepted_tokens=sum(accepted),
        accepted_per_pos=per_pos,
        source=SOURCE,
        num_steps=len(drafted),
    )


class KeptVocabularyMask:
    """A ``LogitsProcessor`` for the assistant: tokens outside the kept set get -inf."""

    def __init__(self, kept_mask: Any) -> None:
        self.kept = kept_mask  # bool tensor over the logit dimension

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        width = scores.shape[-1]
        keep = self.kept[:width]
        if keep.shape[0] < width:  # logit columns beyond the tokenizer's ids are never kept
            keep = torch.cat([keep, keep.new_zeros(width - keep.shape[0])])
        return scores.masked_fill(~keep, float("-inf"))


# (time of the put, token ids) per streamer put; None ends the stream.
_StreamItem = tuple[float, tuple[int, ...]] | None


class _TimedStreamer:
    """A ``BaseStreamer`` that timestamps token ids as ``generate`` hands them over.

    ``generate`` first puts the prompt, then one tensor per step (one token without SD, the
    accepted tokens plus the bonus token with SD); each put becomes one chunk.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[_StreamItem]) -> None:
        self._loop = loop
        self._queue = queue
        self._seen_prompt = False

    def put(self, value: Any) -> None:
        t = time.perf_counter()
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        ids = tuple(int(x) for x in value.reshape(-1).tolist())
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (t, ids))

    def end(self) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, None)


class HFEngine(Engine):
    name = "hf"
    draft_vocabulary = True  # applies ``vocab=N`` exactly (speedbench_plugin.drafters)

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._model: Any = None
        self._assistant: Any = None
        self._lock: asyncio.Lock | None = None
        self._recorder: StepRecorder | None = None  # the running request's; requests are serial
        self._totals: list[SpecCounts] = []
        self._gen_kwargs = generate_kwargs_for(config.drafter)
        self._eos: Any = None
        self._vocabulary: Any = None  # speedbench_plugin.vocab.DraftVocabulary for vocab=N
        self._vocab_mask: Any = None

    @property
    def version(self) -> str:
        import transformers

        return f"transformers {transformers.__version__}"

    def _load_kwargs(self) -> dict[str, Any]:
        import torch

        args = dict(self.config.engine_args)
        dtype = args.get("dtype", "float32")  # float32: the oracle should not flip near-ties
        extra = {k: v for k, v in args.items() if k not in _OWN_ARGS}
        return {"dtype": getattr(torch, dtype) if isinstance(dtype, str) else dtype, **extra}

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        device = self.config.engine_args.get("device", "cpu")
        kwargs = self._load_kwargs()
        drafter = self.config.drafter
        if drafter.method == "draft" and not drafter.model:  # fail before the slow target load
            raise EngineError(
                "hf engine: drafter 'draft' needs a draft model path (draft:k=3,model=PATH; the suite "
                "resolves layers=N for the embedded model before starting the engine)"
            )
        if drafter.option("vocab") is not None:  # a bad N fails here, before any weights load
            self._vocabulary = self._draft_vocabulary(drafter)
        try:
            self._model = AutoModelForCausalLM.from_pretrained(self.config.model, **kwargs).to(device).eval()
        except (OSError, ValueError) as exc:
            raise EngineError(f"hf engine: cannot load model {self.config.model!r}: {exc}") from exc
        self._eos = self._model.generation_config.eos_token_id
        if drafter.method == "draft" and drafter.model:  # model: checked above; this narrows its type
            try:
                self._assistant = AutoModelForCausalLM.from_pretrained(drafter.model, **kwargs).to(device).eval()
            except (OSError, ValueError) as exc:
                raise EngineError(f"hf engine: cannot load draft model {drafter.model!r}: {exc}") from exc
            self._assistant.generation_config.update(**assistant_generation_overrides(drafter.k))
            if self._vocabulary is not None:
                self._vocab_mask = torch.as_tensor(self._vocabulary.mask, device=device)
        if drafter.enabled:
            self._install_counter()
        torch.manual_seed(self.config.seed)

    def _draft_vocabulary(self, drafter: DrafterSpec) -> Any:
        from speedbench_plugin.vocab import VocabError, draft_vocabulary, model_vocab_size

        if drafter.method != "draft":
            raise EngineError(f"hf engine: option vocab= applies to the draft method only, not {drafter.method!r}")
        try:
            # The kept set is counted with the target's tokenizer: the drafter shares it.
            return draft_vocabulary(self.config.model, int(drafter.option("vocab") or 0),
                                    model_vocab_size(drafter.model or self.config.model))
        except (VocabError, OSError) as exc:
            raise EngineError(f"hf engine: drafter {drafter}: {exc}") from exc

    def _install_counter(self) -> None:
        model = self._model
        original = getattr(model, "_get_candidate_generator", None)
        if original is None:
            raise EngineError(
                f"hf engine: {self.version} has no GenerationMixin._get_candidate_generator; the "
                "acceptance counter cannot be attached (pin transformers 5.x or update hf.py)"
            )
        engine = self

        def counted_generator(*args: Any, **kwargs: Any) -> Any:
            generator = original(*args, **kwargs)
            if engine._vocab_mask is not None:
                if not isinstance(getattr(generator, "logits_processor", None), list):
                    raise EngineError(
                        f"hf engine: {engine.version}'s candidate generator has no logits_processor list; "
                        "the draft vocabulary cannot be pruned (update hf.py)"
                    )
                # A new list: the target's own processors stay as they were.
                generator.logits_processor = [*generator.logits_processor, KeptVocabularyMask(engine._vocab_mask)]
            inner = generator.update_candidate_strategy

            def update(input_ids: Any, scores: Any, num_matches: Any) -> Any:
                if engine._recorder is not None:
                    engine._recorder.observe(scores.shape[1] - 1, int(num_matches))
                return inner(input_ids, scores, num_matches)

            generator.update_candidate_strategy = update
            return generator

        # An instance attribute shadows the class method for this model only.
        model._get_candidate_generator = counted_generator

    async def start(self) -> None:
        self._lock = asyncio.Lock()
        await asyncio.to_thread(self._load)

    async def stop(self) -> None:
        self._model = None
        self._assistant = None

    def _generate_blocking(self, prompt_ids: Sequence[int], sampling: Sampling, streamer: _TimedStreamer) -> None:
        import torch

        model = self._model
        input_ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=model.device)
        kwargs: dict[str, Any] = dict(self._gen_kwargs)
        kwargs.update(self.config.engine_args.get("generate_kwargs", {}))
        if self._assistant is not None:
            kwargs["assistant_model"] = self._assistant
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
            torch.manual_seed(self.config.seed if sampling.seed is None else sampling.seed)
        else:
            kwargs.update(do_sample=False)
        if sampling.ignore_eos:
            kwargs["eos_token_id"] = None
        with torch.no_grad():
            model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=sampling.max_tokens,
                streamer=streamer,
                pad_token_id=self._model.generation_config.pad_token_id,
                **kwargs,
            )

    async def generate(self, prompt_ids: Sequence[int], sampling: Sampling, request_id: str) -> StreamResult:
        if self._model is None or self._lock is None:
            raise EngineError("hf engine: generate() before start()")
        loop = asyncio.get_running_loop()
        result = StreamResult(request_id=request_id, prompt_tokens=len(prompt_ids), t_submit=time.perf_counter())
        async with self._lock:  # batch size 1: transformers' assisted generation refuses batches
            queue: asyncio.Queue[_StreamItem] = asyncio.Queue()
            streamer = _TimedStreamer(loop, queue)
            drafter = self.config.drafter
            self._recorder = StepRecorder(drafter.k) if drafter.enabled else None

            def run() -> None:
                try:
                    self._generate_blocking(prompt_ids, sampling, streamer)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, None)  # unblocks the reader on errors

            task = loop.run_in_executor(None, run)
            while True:
                item = await queue.get()
                if item is None:
                    break
                result.chunks.append(Chunk(t=item[0], token_ids=item[1]))
            try:
                await task
            except Exception as exc:  # the model raised inside generate()
                raise EngineError(f"hf engine: request {request_id} failed: {exc!r}") from exc
            recorder, self._recorder = self._recorder, None
        result.finish_reason = self._finish_reason(result.output_ids, sampling)
        if recorder is not None:
            if result.output_tokens and not recorder.drafted:
                raise EngineError(
                    f"hf engine: {self.version} generated with drafter {drafter} but never called "
                    "update_candidate_strategy; acceptance cannot be counted"
                )
            result.spec = recorder.counts()
            result.spec_raw = {"per_step_drafted": list(recorder.drafted), "per_step_accepted": list(recorder.accepted)}
            result.steps = StepRecord(tuple(recorder.accepted), tuple(recorder.drafted), SOURCE)
            self._totals.append(result.spec)
        return result

    def _finish_reason(self, output: list[int], sampling: Sampling) -> str:
        eos = self._eos if isinstance(self._eos, list) else [self._eos]
        if not sampling.ignore_eos and output and output[-1] in eos:
            return "stop"
        return "length"

    async def counters(self) -> SpecCounts | None:
        if not self.config.drafter.enabled:
            return None
        return SpecCounts.total(self._totals, SOURCE)

    @property
    def capabilities(self) -> EngineCapabilities:
        drafting = self.config.drafter.enabled
        return EngineCapabilities(counter_sources=(SOURCE,) if drafting else (), per_step_record=drafting,
                                  missing=("batch size 1: requests queue for the single slot",))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["batch_size"] = 1
        if self._gen_kwargs:
            info["generate_kwargs"] = dict(self._gen_kwargs)
        if self.config.drafter.method == "draft":
            info["assistant_generation_config"] = assistant_generation_overrides(self.config.drafter.k)
        if self._vocabulary is not None:
            info["draft_vocabulary"] = {**self._vocabulary.describe(), "applied_by": SOURCE_VOCAB_MASK}
        return info
