"""Chat template and tokenization, done once by the suite so every engine gets identical token ids."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any


class PromptTooLong(ValueError):
    pass


@dataclass
class ChatTokenizer:
    """Renders a conversation with the target model's chat template and encodes it.

    The template is applied as text and encoded with ``add_special_tokens=False``: the template
    already carries every special token, and some tokenizers would prepend a second BOS.
    """

    model_path: str

    @cached_property
    def tokenizer(self) -> Any:  # transformers.PreTrainedTokenizerBase; imported lazily (heavy)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.model_path)

    @cached_property
    def context_length(self) -> int:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(self.model_path)
        return int(getattr(config, "max_position_embeddings", 0) or self.tokenizer.model_max_length)

    @cached_property
    def eos_token_ids(self) -> frozenset[int]:
        """The tokens that end a generation: the tokenizer's EOS and the model's generation config's
        (engines stop on either)."""
        ids: set[int] = set()
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        try:
            from transformers import GenerationConfig

            configured = GenerationConfig.from_pretrained(self.model_path).eos_token_id
        except (OSError, ValueError):  # no generation_config.json: the tokenizer's EOS alone
            configured = None
        ids.update([configured] if isinstance(configured, int) else list(configured or []))
        return frozenset(ids)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        if not self.has_chat_template:
            return "\n\n".join(m["content"] for m in messages)
        return str(self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False))

    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        return self.encode_text(self.render(messages))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def check_fits(self, prompt_ids: Sequence[int], max_tokens: int, where: str) -> None:
        """Fail with the prompt's name when prompt plus output cannot fit the model's context."""
        need = len(prompt_ids) + max_tokens
        if need > self.context_length:
            raise PromptTooLong(
                f"{where}: {len(prompt_ids)} prompt tokens + {max_tokens} output tokens exceed the "
                f"model's context of {self.context_length} ({Path(self.model_path).name})"
            )
