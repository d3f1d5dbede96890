"""What an answer evaluation reports: `finserve eval answers --json` writes it, the operator's
evaluation gate reads it (from the evaluation Job), and rollout status carries a summary of it.

Only aggregate figures and masked per-intent rows: no customer text, so a report can be stored in
status, events and logs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .config import StrictModel

# The intent of a question the bank's knowledge does not cover: a golden set's label for such rows, and the
# intent serving reports when its out-of-scope gate turned the question away (serving/intent/scope.py).
OUT_OF_SCOPE = "out_of_scope"

# The metric names a gate margin can name; each is a field of AnswerMetrics.
GATE_METRICS = (
    "answer_accuracy",
    "groundedness",
    "truncated_rate",
    "repetition_rate",
    "empty_rate",
    "pii_leaks",
    "intent_accuracy",
)
# Metrics where lower is better (a margin on them reads "canary <= stable + margin").
LOWER_IS_BETTER = frozenset({"truncated_rate", "repetition_rate", "empty_rate", "pii_leaks"})


class AnswerMetrics(StrictModel):
    """Scores of one adapter version's answers on one golden set."""

    adapter: str = Field(description="NAME@VERSION that answered (base@0.0.0 for the bare model).")
    rows: int = Field(ge=0, description="Rows answered (errors excluded).")
    errors: int = Field(0, ge=0, description="Rows whose request failed.")
    answer_accuracy: float = Field(
        ge=0,
        le=1,
        description="Share of answers whose nearest reference answer (MiniLM cosine) is the row's intent.",
    )
    groundedness: float = Field(
        ge=0, le=1, description="Share of answer sentences supported by the knowledge the prompt carried."
    )
    unsupported_sentences: int = Field(
        0, ge=0, description="Answer sentences no knowledge sentence supports."
    )
    truncated_rate: float = Field(ge=0, le=1, description="Share of answers cut off mid-sentence.")
    empty_rate: float = Field(0.0, ge=0, le=1, description="Share of empty answers.")
    repetition_rate: float = Field(ge=0, le=1, description="Share of answers with a repeated n-gram.")
    pii_leaks: int = Field(0, ge=0, description="Answers in which the output guard found PII.")
    intent_accuracy: float | None = Field(None, ge=0, le=1, description="Served intent label accuracy.")
    out_of_scope_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of rows answered with the out-of-scope reply instead of the model (intent.scope).",
    )
    mean_words: float | None = Field(None, ge=0, description="Mean answer length in words.")
    latency_p50_ms: float | None = Field(None, ge=0, description="Per-request latency p50.")
    latency_p95_ms: float | None = Field(None, ge=0, description="Per-request latency p95.")
    tokens_per_s: float | None = Field(None, ge=0, description="Generated tokens per second over the run.")


class PairedComparison(StrictModel):
    """Two versions answered the same rows: which is better on answer accuracy, and how sure."""

    metric: str = Field("answer_accuracy", description="The per-row binary outcome compared.")
    test: Literal["mcnemar", "bootstrap"] = Field(description="The paired test used.")
    delta: float = Field(description="candidate - baseline on the metric (share, not points).")
    ci_low: float = Field(description="Lower end of the 95 % confidence interval of delta.")
    ci_high: float = Field(description="Upper end of the 95 % confidence interval of delta.")
    p_value: float = Field(ge=0, le=1, description="Two-sided p-value of 'no difference'.")
    candidate_only: int = Field(ge=0, description="Rows only the candidate got right.")
    baseline_only: int = Field(ge=0, description="Rows only the baseline got right.")
    verdict: Literal["better", "worse", "no-significant-difference"] = Field(description="At the 5 % level.")


class IntentRow(StrictModel):
    """Per-intent figures of one version (the intent is a Banking77 label, never customer text)."""

    rows: int = Field(ge=0, description="Rows of this intent.")
    answer_accuracy: float = Field(ge=0, le=1, description="As in AnswerMetrics, on these rows.")
    groundedness: float = Field(ge=0, le=1, description="As in AnswerMetrics, on these rows.")


class AnswerEvalReport(StrictModel):
    """One `finserve eval answers` run: the candidate, optionally a baseline on the same rows."""

    dataset: str = Field(description="Where the golden set came from (path or name); never its content.")
    dataset_sha256: str | None = Field(None, description="Checksum of the golden set file.")
    candidate: AnswerMetrics = Field(description="The version under evaluation.")
    baseline: AnswerMetrics | None = Field(None, description="The version compared against, if any.")
    comparison: PairedComparison | None = Field(None, description="Paired test, when there is a baseline.")
    groundedness_threshold: float = Field(
        description="Cosine at or above which a sentence counts as supported."
    )
    seconds: float = Field(ge=0, description="Wall time of the run.")
    per_intent: dict[str, IntentRow] = Field(
        default_factory=dict,
        description="The candidate's figures per intent (left out of summaries, e.g. "
        "a Job's termination message, which Kubernetes caps at 4 KiB).",
    )

    def summary(self) -> AnswerEvalReport:
        """The report without per-intent rows: what fits a termination message, an Event or status."""
        return self.model_copy(update={"per_intent": {}})
