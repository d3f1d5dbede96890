"""False positives on real customer messages: Banking77 (CC BY 4.0) holds no PII but one first name, so the
guard finds that name and nothing else."""

from __future__ import annotations

import csv

from finserve.serving.guard import PIIGuard
from finserve.serving.paths import banking77_csv


def test_no_findings_in_banking77(guard: PIIGuard) -> None:
    with open(banking77_csv(), encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    assert len(texts) > 10_000
    flagged = [
        (text[f.start : f.end], f.type, text)
        for text, result in zip(texts, guard.scan_each(texts), strict=True)
        for f in result.findings
    ]
    # The one name the dataset holds, a true positive: "I'm buying my son Bertie a starter home".
    assert [(value, kind) for value, kind, _ in flagged] == [("Bertie", "PERSON")]


def test_banking77_read_as_one_conversation_stays_clean(guard: PIIGuard) -> None:
    # Neighbouring queries joined (conversation.py) must not make names or numbers out of thin air.
    with open(banking77_csv(), encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    flagged = [
        (text[f.start : f.end], f.type, text)
        for i in range(0, len(texts), 8)
        for text, result in zip(texts[i : i + 8], guard.scan_many(texts[i : i + 8]), strict=True)
        for f in result.findings
    ]
    assert [(value, kind) for value, kind, _ in flagged] == [("Bertie", "PERSON")]  # the true positive above
