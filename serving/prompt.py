"""Builds the generator's messages from the guarded conversation and the guarded knowledge."""

from __future__ import annotations

from finserve.serving.inference.types import ChatMessage


def build_messages(system_prompt: str, knowledge: list[str], conversation: list[ChatMessage]) -> list[ChatMessage]:
    """System prompt + numbered knowledge in one system turn, then the client's turns.

    Client system turns are folded into ours rather than dropped, after the knowledge, so the
    operator's instructions come first.
    """
    parts = [system_prompt.strip()]
    if knowledge:
        parts.append("Knowledge:\n" + "\n".join(f"[{i}] {text.strip()}" for i, text in enumerate(knowledge, 1)))
    client_system = [m.content for m in conversation if m.role == "system"]
    if client_system:
        parts.append("\n".join(client_system))
    turns = [m for m in conversation if m.role != "system"]
    return [ChatMessage(role="system", content="\n\n".join(parts)), *turns]
