"""What retrieval returns: documents, hits with scores, filters, one result per query."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from finserve.contracts import StrictModel

Kind = Literal["answer", "example"]
CacheTier = Literal["l1", "l2", "miss", "off", "answers"]

# Filter values go into a Milvus expression: this pattern admits no quote, backslash or space, so a
# value can never change the expression's structure. Banking77 labels include "?" (reverted_card_payment?).
FILTER_VALUE_PATTERN = r"^[A-Za-z0-9_.:?-]{1,128}$"


class Document(StrictModel):
    """One indexed text: an intent's answer, or a training example of that intent."""

    id: str = Field(description="Unique within one index build.")
    text: str = Field(description="The answer text, or the example query as written.")
    intent: str = Field(description="Banking77 intent label.")
    kind: Kind = Field(description="answer: shown to the model as context; example: used for intent voting.")
    tenant: str = Field(description="Tenant the document belongs to; searches are scoped to one tenant.")


class Hit(Document):
    """A document returned by a search."""

    score: float = Field(
        description="Cosine similarity to the query, higher is closer (at most 1). For answers: to the "
        "answer or to the nearest returned example of its intent, whichever is closer."
    )


class SearchFilters(StrictModel):
    """Restricts a search; every field optional."""

    intent: str | None = Field(default=None, pattern=FILTER_VALUE_PATTERN, description="Only this intent.")
    tenant: str | None = Field(
        default=None,
        pattern=FILTER_VALUE_PATTERN,
        description="Tenant to search; None: the configured default.",
    )


class RetrievalResult(StrictModel):
    """The answers and nearest examples for one query, and where they came from.

    Results served from the L1 cache are shared objects: treat them as read-only.
    """

    hits: list[Hit] = Field(description="Answer documents, best first (top_k).")
    examples: list[Hit] = Field(description="Nearest training examples, best first (example_k).")
    cache: CacheTier = Field(
        description="l1 / l2: served from that cache; miss: searched; off: caching disabled; answers: Milvus "
        "was down and only the answers held in memory were searched (no examples, never cached)."
    )
    index_version: str = Field(description="Content hash of the index that produced the result.")
    lookups: dict[Literal["l1", "l2"], Literal["hit", "miss", "error"]] = Field(
        default_factory=dict,
        description="What each cache tier answered for this query (empty when caching is off). It travels "
        "with the result so the gateway, whose /metrics is scraped, counts lookups made in the retriever's "
        "process (another Ray replica).",
    )


class IngestReport(StrictModel):
    """What an ingest did."""

    index_version: str = Field(description="Content hash of answers, examples and embedder.")
    collection: str = Field(description="Physical collection the alias now points at.")
    answers: int = Field(description="Answer documents indexed.")
    examples: int = Field(description="Example documents indexed.")
    off_topic: int = Field(
        default=0, description="Of those, off-topic questions (examples of out_of_scope; see off_topic_path)."
    )
    seconds: float = Field(description="Wall time of the ingest.")
    skipped: bool = Field(default=False, description="True when an index of this version already existed.")
    quarantined: int = Field(
        default=0,
        description="Documents in which the PII guard found something (left out or indexed masked).",
    )
