"""PIIGuard: find PII with Presidio's analyzer, rewrite it per policy with Presidio's anonymizer.

One guard object serves the user input, every retrieved chunk and the model output. It is built
once (recognizers, NLP engine, operators) and warmed, so a scan pays only for the matching.

Normalise, detect, map back: the analyzer reads a normalised view of each text (normalise.py:
full-width and other digits as ASCII, invisible characters dropped, digit words as digits,
spelled-out e-mails), and each finding is mapped back to the original characters it came from,
which are the ones rewritten.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer import RecognizerResult as AnalyzerHit
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from presidio_anonymizer.entities import RecognizerResult as AnonymizerSpan

from .actions import operator_for, replace_token
from .config import EntityAction, GuardConfig
from .conversation import joins, split_back
from .keys import load_hash_key
from .nlp import build_nlp_engine, keep_context_words, ner_recognizers
from .normalise import MappedText, normalise
from .recognizers import build_recognizers
from .results import Finding, GuardResult
from .spans import Span, merge_overlaps

log = logging.getLogger(__name__)

# Touches every recognizer once at start-up (Presidio compiles patterns lazily, on first use).
_WARM_UP_TEXT = (
    "My name is Jane Doe, card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, "
    "ssn 536-22-8145, pin 4821, jane@example.com, +44 20 7946 0958, 10.0.0.1, sort code 20-00-00 12345678, "
    "NI AB 12 34 56 C, wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT."
)


class PIIGuard:
    """Thread-safe, synchronous PII scanner built from a GuardConfig."""

    def __init__(self, config: GuardConfig | None = None, *, hash_key: bytes | None = None) -> None:
        self.config = config or GuardConfig()
        cfg = self.config
        # The key is only needed (and the missing-key warning only useful) when hashing is in use.
        if hash_key is None:
            hash_key = load_hash_key() if cfg.uses(EntityAction.hash) else b""
        self._entities = list(cfg.entities)
        self._nlp = build_nlp_engine(cfg)
        recognizers = build_recognizers(cfg) + ner_recognizers(cfg)
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[cfg.language])
        keep_context_words(self._nlp, [w for r in recognizers for w in (r.context or [])])
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=self._nlp,
            supported_languages=[cfg.language],
            default_score_threshold=cfg.score_threshold,
            # Customers name the thing after the number too ("07700 900123 is my mobile").
            context_aware_enhancer=LemmaContextAwareEnhancer(context_prefix_count=5, context_suffix_count=4),
        )
        self._anonymizer = AnonymizerEngine()
        self._operators = {entity: self._operator(entity, hash_key) for entity in self._entities}
        # Anything a recognizer reports outside the configured types still never leaks.
        self._operators["DEFAULT"] = OperatorConfig("replace")
        self._blocking = frozenset(e for e in self._entities if cfg.action_for(e) is EntityAction.block)
        # Presidio and spaCy do not promise thread safety; the work holds the GIL anyway, so
        # serialising it costs no parallelism.
        self._lock = threading.Lock()
        self.scan(_WARM_UP_TEXT)
        log.info("PII guard ready: entities=%s nlp=%s", self._entities, cfg.spacy_model or "tokenizer")

    @classmethod
    def from_config(cls, config: GuardConfig | dict[str, object] | None = None) -> PIIGuard:
        """Build from a GuardConfig or its dict form (e.g. the `guard:` section of a YAML file)."""
        if isinstance(config, dict):
            config = GuardConfig.model_validate(config)
        return cls(config)

    def _operator(self, entity: str, key: bytes) -> OperatorConfig:
        action = self.config.action_for(entity)
        if action in (EntityAction.replace, EntityAction.block):
            return OperatorConfig("replace", {"new_value": replace_token(entity)})
        if action is EntityAction.redact:
            return OperatorConfig("redact")
        return OperatorConfig("custom", {"lambda": operator_for(entity, self.config, key)})

    def scan(self, text: str) -> GuardResult:
        """Find and rewrite the PII in one text."""
        if not text.strip():
            return GuardResult(text=text)
        with self._lock:
            view = normalise(text)
            spans = self._analyze(view, None)
        return self._apply(text, spans)

    def scan_each(self, texts: list[str]) -> list[GuardResult]:
        """scan() for each text on its own (independent texts such as knowledge chunks); the NLP
        step runs as one batch."""
        return [self._apply(t, spans) for t, spans in zip(texts, self._detect_each(texts), strict=True)]

    def scan_many(self, texts: list[str]) -> list[GuardResult]:
        """The texts of one conversation, in order: each is scanned, and a value split between
        two of them (a card typed over two turns, a name after a cue in the system message) is
        found too and masked in both (conversation.py)."""
        found = self._detect_each(texts)
        pairs = joins(texts) if len(texts) > 1 else []
        if pairs:
            joined = self._detect_each([p.text for p in pairs])
            for pair, spans in zip(pairs, joined, strict=True):
                for index, part in split_back(pair, spans):
                    found[index] = merge_overlaps([*found[index], part])
        return [self._apply(t, spans) for t, spans in zip(texts, found, strict=True)]

    def _detect_each(self, texts: list[str]) -> list[list[Span]]:
        todo = [i for i, t in enumerate(texts) if t.strip()]
        found: list[list[Span]] = [[] for _ in texts]
        if not todo:
            return found
        views = [normalise(texts[i]) for i in todo]
        with self._lock:
            batch: Iterable[tuple[str, NlpArtifacts]] = self._nlp.process_batch(
                [v.text for v in views], language=self.config.language
            )
            for i, view, (_, artifacts) in zip(todo, views, batch, strict=True):
                found[i] = self._analyze(view, artifacts)
        return found

    def _analyze(self, view: MappedText, artifacts: NlpArtifacts | None) -> list[Span]:
        hits: list[AnalyzerHit] = self._analyzer.analyze(
            text=view.text,
            language=self.config.language,
            entities=self._entities,
            score_threshold=self.config.score_threshold,
            allow_list=self.config.allow_list or None,
            nlp_artifacts=artifacts,
        )
        return merge_overlaps(
            [Span(h.entity_type, *view.original_span(h.start, h.end), h.score) for h in hits]
        )

    def _apply(self, text: str, spans: list[Span]) -> GuardResult:
        if not spans:
            return GuardResult(text=text)
        anonymized = self._anonymizer.anonymize(
            text=text,
            analyzer_results=[AnonymizerSpan(s.entity_type, s.start, s.end, s.score) for s in spans],
            operators=self._operators,
            # Spans are already disjoint; merging neighbours would break the 1:1 with findings.
            merge_entities_with_spaces=False,
        )
        findings = [
            Finding(type=s.entity_type, start=s.start, end=s.end, score=round(s.score, 4)) for s in spans
        ]
        blocked = sorted({s.entity_type for s in spans} & self._blocking)
        return GuardResult(text=anonymized.text, findings=findings, blocked=blocked)
