"""Building Presidio results for finserve's own recognizers, with the metadata Presidio expects."""

from __future__ import annotations

from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult

# What context alone vouches for: a card failing Luhn after a card word, an IBAN failing mod-97 in its country's
# format, an SSN in a never-issued range after its keyword. Under every rule that knows a format, which then
# names the type when both fire.
CONTEXT_SCORE = 0.6


def make_result(
    recognizer: EntityRecognizer, entity: str, start: int, end: int, score: float, why: str
) -> RecognizerResult:
    return RecognizerResult(
        entity_type=entity,
        start=start,
        end=end,
        score=score,
        analysis_explanation=AnalysisExplanation(
            recognizer=recognizer.name, original_score=score, textual_explanation=why
        ),
        recognition_metadata={
            RecognizerResult.RECOGNIZER_NAME_KEY: recognizer.name,
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id,
        },
    )
