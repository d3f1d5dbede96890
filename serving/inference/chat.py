"""The prompt the model sees: the tokenizer's own chat template over the guarded messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .types import ChatMessage


def render_prompt(tokenizer: Any, messages: Sequence[ChatMessage]) -> list[int]:
    """Token ids of the templated conversation, ending with the assistant turn's opening.

    ``tokenizer``: a ChatTokenizer (the CPU and llama.cpp engines) or a transformers tokenizer (vLLM's).
    """
    text = tokenizer.apply_chat_template(
        [m.model_dump() for m in messages], add_generation_prompt=True, tokenize=False
    )
    # The template already spells the special tokens out; adding BOS again would double it.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
