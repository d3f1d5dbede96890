"""The NLP engine under the analyzer: a bare tokenizer by default, an installed spaCy model for NER.

Without a model, Presidio still needs tokens and lemmas to raise the score of a match that has
context words near it ("ssn 536-22-8145"). A blank spaCy pipeline tokenizes in microseconds but
leaves lemmas empty, which silently disables that; one tiny component sets each lemma to the
lowercased word. Nothing here ever downloads a model.
"""

from __future__ import annotations

from pathlib import Path

import spacy
from presidio_analyzer import EntityRecognizer
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpEngine, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import SpacyRecognizer
from spacy.language import Language
from spacy.tokens import Doc

from .config import GuardConfig

LOWER_LEMMA = "finserve_lower_lemma"


@Language.component(LOWER_LEMMA)
def _lower_lemma(doc: Doc) -> Doc:
    for token in doc:
        token.lemma_ = token.lower_
    return doc


class GuardConfigError(ValueError):
    """The guard cannot be built from its config (e.g. the named spaCy model is not installed)."""


class TokenizerNlpEngine(SpacyNlpEngine):
    """spaCy's blank pipeline for `language` plus lowercase lemmas: no model, no NER."""

    engine_name = "finserve_tokenizer"

    def __init__(self, language: str) -> None:
        super().__init__(models=[{"lang_code": language, "model_name": f"blank:{language}"}])
        self.language = language

    def load(self) -> None:
        self.nlp = {self.language: spacy.blank(self.language)}

    def get_supported_entities(self) -> list[str]:
        return []


def _installed(model: str) -> bool:
    return spacy.util.is_package(model) or Path(model).is_dir()


def build_nlp_engine(config: GuardConfig) -> NlpEngine:
    """A loaded engine; raises GuardConfigError for a spaCy model that is not installed."""
    if config.spacy_model is None:
        engine: NlpEngine = TokenizerNlpEngine(config.language)
    else:
        if not _installed(config.spacy_model):
            raise GuardConfigError(
                f"spaCy model {config.spacy_model!r} is not installed (a package name or a pipeline "
                "directory); finserve never downloads models. See docs/pii.md."
            )
        engine = SpacyNlpEngine(
            models=[{"lang_code": config.language, "model_name": config.spacy_model}],
            ner_model_configuration=NerModelConfiguration(),
        )
    engine.load()
    if isinstance(engine, SpacyNlpEngine) and engine.nlp is not None:
        for nlp in engine.nlp.values():
            # Pipelines without a lemmatizer (e.g. a custom NER-only one) get the cheap lemmas.
            if "lemmatizer" not in nlp.pipe_names and LOWER_LEMMA not in nlp.pipe_names:
                nlp.add_pipe(LOWER_LEMMA)
    return engine


def keep_context_words(engine: NlpEngine, words: list[str]) -> None:
    """Presidio drops stop words before matching context, and spaCy counts "call" as one, so
    "call me on ..." would never raise a phone's score: the recognizers' context words are
    taken off the stop list of this engine's pipelines."""
    if isinstance(engine, SpacyNlpEngine) and engine.nlp is not None:
        for nlp in engine.nlp.values():
            for word in words:
                for form in {word.strip().lower(), word.strip()}:
                    if form:
                        nlp.vocab[form].is_stop = False


def ner_recognizers(config: GuardConfig) -> list[EntityRecognizer]:
    """The recognizer reading the spaCy model's entities, limited to the configured NER types."""
    if config.spacy_model is None:
        return []
    wanted = [e for e in SpacyRecognizer.ENTITIES if e in config.entities]
    if not wanted:
        return []
    return [SpacyRecognizer(supported_language=config.language, supported_entities=wanted)]
