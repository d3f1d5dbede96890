"""Answer metrics of `finserve eval answers`: pure functions over texts and unit vectors, no model, no I/O.

Embeddings come in as arrays (the caller embeds with the packaged MiniLM), so the math is tested
on fixed answers and the driver only gathers. The definitions (docs/training.md, "Answer evaluation"):

- sentences: split after ``.``, ``!``, ``?`` or ``…`` followed by white space, and at line breaks;
  list markers are dropped; sentences under :data:`MIN_SENTENCE_WORDS` words ("Sure!", "Hi there.")
  carry no claim and are not scored for groundedness, nor is the unfinished tail of a truncated answer.
- accurate: the answer's nearest reference answer (cosine) among every intent's is the row's intent.
- supported: a sentence's highest cosine to any sentence of the knowledge the prompt carried is at
  least the threshold (:data:`GROUNDEDNESS_THRESHOLD`).
- truncated: the generator stopped at max_tokens (finish_reason ``length``) and the answer does not
  end a sentence; an answer that the model ended itself, or that the cap hit at a full stop, is whole.
- repetitive: a word 4-gram occurs 3+ times, or one word 4+ times in a row (the two ways a small
  model loops: a phrase, or a stuck token).
- out of scope (:func:`scope_score`): a row whose question the pipeline turned away, or whose golden intent is
  ``out_of_scope``, is accurate exactly when the two agree; the turn-away reply is the bank's configured text,
  not a claim drawn from the knowledge, so its sentences are not scored for groundedness.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from finserve.contracts.evaluation import OUT_OF_SCOPE

# Chosen on validation rows (docs/training.md): faithful paraphrases of knowledge sentences score
# 0.83-0.98, the base model's invented on-topic sentences 0.55-0.74, other intents' sentences ~0.44 (median).
GROUNDEDNESS_THRESHOLD = 0.75
MIN_SENTENCE_WORDS = 3
NGRAM, NGRAM_TIMES, RUN_LENGTH = 4, 3, 4

_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)]|\[\d+\])\s+")
_FINAL = re.compile(r"[.!?…][\"'”’)\]]*\s*$")
# A word keeps its apostrophes ("merchant's", "you're"): split, they would make 4-grams of three words.
_WORD = re.compile(r"\w+(?:['’]\w+)*")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, list markers removed, empty ones dropped."""
    out = []
    for line in text.splitlines():
        for part in _SENTENCE_END.split(_LIST_MARKER.sub("", line)):
            if part.strip():
                out.append(part.strip())
    return out


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def scored_sentences(text: str) -> list[str]:
    """The sentences that carry a claim (at least MIN_SENTENCE_WORDS words): what groundedness scores."""
    return [s for s in split_sentences(text) if len(words(s)) >= MIN_SENTENCE_WORDS]


def claim_sentences(text: str, finish_reason: str | None) -> list[str]:
    """The sentences groundedness scores: :func:`scored_sentences`, less the unfinished tail of a truncated
    answer (a fragment is already counted by the truncation rate, and says nothing checkable)."""
    sentences = scored_sentences(text)
    if sentences and is_truncated(text, finish_reason) and text.rstrip().endswith(sentences[-1]):
        sentences = sentences[:-1]
    return sentences


def is_empty(text: str) -> bool:
    return not text.strip()


def is_truncated(text: str, finish_reason: str | None) -> bool:
    """Cut off mid-sentence: the token cap ended generation and the last sentence is unfinished."""
    return finish_reason == "length" and not is_empty(text) and not _FINAL.search(text)


def is_repetitive(text: str) -> bool:
    """A word 4-gram 3+ times, or the same word 4+ times in a row."""
    tokens = words(text)
    run = 1
    for prev, cur in zip(tokens, tokens[1:], strict=False):
        run = run + 1 if cur == prev else 1
        if run >= RUN_LENGTH:
            return True
    grams = Counter(tuple(tokens[i : i + NGRAM]) for i in range(len(tokens) - NGRAM + 1))
    return any(n >= NGRAM_TIMES for n in grams.values())


def has_pii(counts: Mapping[str, int] | None) -> bool:
    """The output guard found at least one entity in the answer."""
    return any(n > 0 for n in (counts or {}).values())


def nearest_intent(answer_vector: np.ndarray, reference_vectors: np.ndarray, intents: Sequence[str]) -> str:
    """The intent whose reference answer is closest (cosine of unit vectors) to the answer."""
    scores = reference_vectors @ answer_vector
    return intents[int(np.argmax(scores))]


def support_scores(sentence_vectors: np.ndarray, knowledge_vectors: np.ndarray) -> np.ndarray:
    """Each answer sentence's highest cosine to any knowledge sentence (0 when there is no knowledge)."""
    if len(sentence_vectors) == 0:
        return np.zeros(0, dtype=np.float32)
    if len(knowledge_vectors) == 0:
        return np.zeros(len(sentence_vectors), dtype=np.float32)
    return (sentence_vectors @ knowledge_vectors.T).max(axis=1)


@dataclass(frozen=True)
class RowScore:
    """One answer's scores."""

    intent: str  # the row's true intent
    accurate: bool
    sentences: int  # scored sentences
    supported: int  # of those, supported by the knowledge
    truncated: bool
    empty: bool
    repetitive: bool
    pii: bool
    words: int


@dataclass(frozen=True)
class Aggregate:
    rows: int
    answer_accuracy: float
    groundedness: float
    unsupported_sentences: int
    truncated_rate: float
    empty_rate: float
    repetition_rate: float
    pii_leaks: int
    mean_words: float


def scope_score(gold: str, turned_away: bool, answer: str, pii: Mapping[str, int] | None) -> RowScore:
    """The score of a row the out-of-scope gate decided (turned away), or should have (gold ``out_of_scope``):
    right when the question was turned away exactly when it is out of scope; no sentence scored."""
    return RowScore(
        intent=gold,
        accurate=turned_away == (gold == OUT_OF_SCOPE),
        sentences=0,
        supported=0,
        truncated=False,
        empty=is_empty(answer),
        repetitive=False,
        pii=has_pii(pii),
        words=len(words(answer)),
    )


def aggregate(scores: Sequence[RowScore]) -> Aggregate:
    """Rates over answers; groundedness pooled over every scored sentence (an answer with none adds nothing;
    no sentence at all gives 0, not a perfect score)."""
    n = len(scores)
    sentences = sum(s.sentences for s in scores)
    supported = sum(s.supported for s in scores)

    def rate(flag: str) -> float:
        return sum(getattr(s, flag) for s in scores) / n if n else 0.0

    return Aggregate(
        rows=n,
        answer_accuracy=rate("accurate"),
        groundedness=supported / sentences if sentences else 0.0,
        unsupported_sentences=sentences - supported,
        truncated_rate=rate("truncated"),
        empty_rate=rate("empty"),
        repetition_rate=rate("repetitive"),
        pii_leaks=sum(s.pii for s in scores),
        mean_words=sum(s.words for s in scores) / n if n else 0.0,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


# ---- paired comparison of two versions on the same rows ----


@dataclass(frozen=True)
class Paired:
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    candidate_only: int
    baseline_only: int
    verdict: str


def paired_test(
    candidate: Sequence[bool],
    baseline: Sequence[bool],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Paired:
    """McNemar's exact test on the discordant rows for the p-value; a paired bootstrap (rows resampled
    with replacement, ``seed``) for the 95 % interval of the accuracy delta. The verdict follows the
    p-value alone: "better"/"worse" only when p < ``alpha``."""
    if len(candidate) != len(baseline):
        raise ValueError("candidate and baseline must score the same rows")
    if not candidate:
        raise ValueError("no rows to compare")
    a = np.asarray(candidate, dtype=bool)
    b = np.asarray(baseline, dtype=bool)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    discordant = only_a + only_b
    p = float(binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0
    diff = a.astype(np.float64) - b.astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(resamples, len(diff)))
    deltas = diff[idx].mean(axis=1)
    low, high = (float(x) for x in np.percentile(deltas, [2.5, 97.5]))
    delta = float(diff.mean())
    verdict = "no-significant-difference"
    if p < alpha:
        verdict = "better" if delta > 0 else "worse"
    return Paired(
        delta=delta,
        ci_low=low,
        ci_high=high,
        p_value=min(p, 1.0),
        candidate_only=only_a,
        baseline_only=only_b,
        verdict=verdict,
    )
