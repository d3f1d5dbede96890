"""The generator's messages: the system prompt, the knowledge (the classified intent's first) and the turns."""

from __future__ import annotations

from finserve.serving.inference.types import ChatMessage
from finserve.serving.prompt import build_messages, intent_first


def test_the_classified_intents_knowledge_leads_and_the_rest_keep_retrieval_order() -> None:
    texts, intents = ["a", "b", "c"], ["card_arrival", "lost_or_stolen_card", "pin_blocked"]
    assert intent_first(texts, intents, "pin_blocked") == ["c", "a", "b"]
    assert intent_first(texts, intents, "lost_or_stolen_card") == ["b", "a", "c"]
    assert intent_first(texts, intents, "card_arrival") == texts


def test_no_entry_of_the_intent_or_no_intent_leaves_retrieval_order() -> None:
    texts, intents = ["a", "b"], ["card_arrival", "pin_blocked"]
    assert intent_first(texts, intents, "age_limit") == texts
    assert intent_first(texts, intents, None) == texts
    assert intent_first([], [], "age_limit") == []


def test_knowledge_is_numbered_in_the_system_turn_and_client_system_turns_follow_it() -> None:
    conversation = [
        ChatMessage(role="system", content="Answer in French."),
        ChatMessage(role="user", content="Hi"),
    ]
    [system, user] = build_messages("You are the bank.", ["first", "second"], conversation)
    assert system.role == "system" and user == conversation[1]
    assert system.content == "You are the bank.\n\nKnowledge:\n[1] first\n[2] second\n\nAnswer in French."
