"""The knowledge base as data: the shared split, the answer file, documents and the index version."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from finserve.serving.paths import banking77_categories, banking77_csv
from finserve.serving.retrieval.kb import (
    build_documents,
    default_split,
    index_version,
    load_answers,
    read_banking77,
)


@pytest.fixture(scope="module")
def all_rows() -> list[tuple[str, str]]:
    return read_banking77(banking77_csv())


def test_read_keeps_file_order_and_columns(all_rows) -> None:
    assert len(all_rows) == 10003
    assert all_rows[0] == ("I am still waiting on my card?", "card_arrival")


def test_default_split_is_80_20_stratified_disjoint_and_deterministic(all_rows) -> None:
    train, val = default_split(all_rows)
    assert len(train) + len(val) == len(all_rows)
    assert len(val) == pytest.approx(0.2 * len(all_rows), abs=1)
    assert Counter(train) + Counter(val) == Counter(all_rows)
    # Stratified: every intent keeps its share (within one row of rounding) on both sides.
    totals, held = Counter(c for _, c in all_rows), Counter(c for _, c in val)
    assert set(held) == set(totals)
    assert all(abs(held[c] - 0.2 * totals[c]) <= 1 for c in totals)
    assert default_split(all_rows) == (train, val)


def test_default_split_matches_sklearn_seeded_call(all_rows) -> None:
    from sklearn.model_selection import train_test_split

    expected = train_test_split(all_rows, test_size=0.2, random_state=77, stratify=[c for _, c in all_rows])
    assert default_split(all_rows) == (list(expected[0]), list(expected[1]))


def test_shipped_answers_cover_every_banking77_intent_without_pii() -> None:
    answers = load_answers()
    categories = json.loads(banking77_categories().read_text())
    assert set(answers) == set(categories)
    for intent, text in answers.items():
        assert 2 <= len(re.findall(r"[.!?](?:\s|$)", text)) <= 4, intent
        # Generic text only: no account, card or phone numbers, no e-mail addresses.
        assert not re.search(r"\d{4,}|@", text), intent


def test_load_answers_rejects_empty_text(tmp_path) -> None:
    path = tmp_path / "answers.yaml"
    path.write_text("card_arrival: ''\n")
    with pytest.raises(ValueError, match="card_arrival"):
        load_answers(path)


def test_documents_need_an_answer_for_every_example_intent() -> None:
    with pytest.raises(ValueError, match="no answer text for intents: pin_blocked"):
        build_documents(
            {"card_arrival": "Cards arrive."},
            [("where is my card", "card_arrival"), ("pin blocked", "pin_blocked")],
            "default",
        )


def test_documents_have_kind_tenant_and_unique_ids() -> None:
    docs = build_documents({"b": "B answer.", "a": "A answer."}, [("x", "a"), ("x", "a"), ("y", "b")], "acme")
    assert [(d.kind, d.intent) for d in docs] == [
        ("answer", "a"),
        ("answer", "b"),
        ("example", "a"),
        ("example", "a"),
        ("example", "b"),
    ]
    assert {d.tenant for d in docs} == {"acme"}
    assert len({d.id for d in docs}) == len(docs)


def test_index_version_depends_on_answers_examples_and_embedder() -> None:
    rows = [("where is my card", "card_arrival")]
    base = build_documents({"card_arrival": "Cards arrive."}, rows, "default")
    v = index_version(base, "emb-1")
    assert v == index_version(build_documents({"card_arrival": "Cards arrive."}, rows, "default"), "emb-1")
    assert v != index_version(
        build_documents({"card_arrival": "Cards arrive soon."}, rows, "default"), "emb-1"
    )
    assert v != index_version(
        build_documents({"card_arrival": "Cards arrive."}, rows[:0], "default"), "emb-1"
    )
    assert v != index_version(base, "emb-2")
    assert len(v) == 64


def test_off_topic_questions_are_examples_of_out_of_scope_without_an_answer() -> None:
    from finserve.contracts.evaluation import OUT_OF_SCOPE

    docs = build_documents(
        {"a": "A answer."}, [("x", "a")], "acme", off_topic=["What's the weather?", "Tell me a joke"]
    )
    assert [(d.id, d.kind, d.intent) for d in docs[-2:]] == [
        ("off_topic:0", "example", OUT_OF_SCOPE),
        ("off_topic:1", "example", OUT_OF_SCOPE),
    ]
    assert not any(d.kind == "answer" and d.intent == OUT_OF_SCOPE for d in docs)
    # the list is part of the index version
    assert index_version(docs, "emb-1") != index_version(docs[:-1], "emb-1")


def test_the_off_topic_list_skips_comments_and_blanks_and_can_be_switched_off(tmp_path) -> None:
    from finserve.serving.retrieval.kb import load_off_topic

    path = tmp_path / "off_topic.txt"
    path.write_text("# what we do not answer\n\nWhat is your  mortgage rate?\n  Tell me a joke \n")
    assert load_off_topic(path) == ["What is your mortgage rate?", "Tell me a joke"]
    assert load_off_topic("") == []
    shipped = load_off_topic()
    assert len(shipped) >= 100 and not any(line.startswith("#") for line in shipped)
