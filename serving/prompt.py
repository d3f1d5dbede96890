"""Builds the generator's messages from the guarded conversation and the guarded knowledge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from finserve.serving.inference.types import ChatMessage

T = TypeVar("T")


def intent_first(items: Sequence[T], intents: Sequence[str], intent: str | None) -> list[T]:
    """``items`` (retrieved knowledge, best first) with the one of ``intent`` moved to the front.

    The pipeline classifies the intent before it generates (served intent accuracy is above the
    retrieval's top-1 answer accuracy), and the adapters are tuned to answer from the first
    knowledge entry: so the entry of the classified intent leads, the rest keep retrieval's order.
    Unchanged when no entry belongs to ``intent``.
    """
    for i, name in enumerate(intents):
        if name == intent:
            return [items[i], *items[:i], *items[i + 1 :]]
    return list(items)


def build_messages(
    system_prompt: str, knowledge: list[str], conversation: list[ChatMessage]
) -> list[ChatMessage]:
    """System prompt + numbered knowledge in one system turn, then the client's turns.

    Client system turns are folded into ours rather than dropped, after the knowledge, so the
    operator's instructions come first.
    """
    parts = [system_prompt.strip()]
    if knowledge:
        parts.append(
            "Knowledge:\n" + "\n".join(f"[{i}] {text.strip()}" for i, text in enumerate(knowledge, 1))
        )
    client_system = [m.content for m in conversation if m.role == "system"]
    if client_system:
        parts.append("\n".join(client_system))
    turns = [m for m in conversation if m.role != "system"]
    return [ChatMessage(role="system", content="\n\n".join(parts)), *turns]
