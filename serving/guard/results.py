"""What a guard scan returns, apart from the guard itself (which loads Presidio and spaCy).

Stages, the pipeline and the streaming releaser only pass results around; importing them from here keeps
a process that never scans (the Generator replica, say) from importing Presidio, spaCy and what they pull in.
"""

from __future__ import annotations

from collections import Counter

from pydantic import Field

from finserve.contracts import StrictModel


class Finding(StrictModel):
    """One piece of PII; offsets index the original, unsanitized text."""

    type: str = Field(description="Entity type, e.g. CREDIT_CARD.")
    start: int = Field(ge=0, description="Offset of the first character in the original text.")
    end: int = Field(ge=0, description="Offset one past the last character in the original text.")
    score: float = Field(ge=0.0, le=1.0, description="Recognizer confidence, 0..1.")


class GuardResult(StrictModel):
    """A scanned text: what was found, the sanitized text, and the types the policy blocks."""

    text: str = Field(description="The text with every finding rewritten per policy.")
    findings: list[Finding] = Field(default_factory=list, description="Findings, sorted by start, disjoint.")
    blocked: list[str] = Field(
        default_factory=list, description="Sorted entity types found whose policy is block."
    )

    def counts(self) -> dict[str, int]:
        """Entity type -> number of findings."""
        return dict(Counter(f.type for f in self.findings))
