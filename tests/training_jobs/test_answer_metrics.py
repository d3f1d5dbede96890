"""Answer metrics on fixed answers (real MiniLM, real reference answers) and the paired test on known tables."""

from __future__ import annotations

import numpy as np
import pytest

from finserve.training import answer_metrics as am
from finserve.training.answer_eval import (
    Answered,
    AnswerScorer,
    VersionRun,
    build_report,
    metrics,
    score_run,
    write_answers,
)


@pytest.fixture(scope="module")
def references() -> dict[str, str]:
    from finserve.serving.retrieval.kb import load_answers

    return load_answers()


@pytest.fixture(scope="module")
def scorer(references: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> AnswerScorer:
    from finserve.serving.retrieval import Embedder

    return AnswerScorer(Embedder(cache_dir=tmp_path_factory.mktemp("embedder")), references)


def answered(gold: str, answer: str, knowledge: list[str], finish: str = "stop", **kw: object) -> Answered:
    return Answered(gold=gold, answer=answer, knowledge=knowledge, finish_reason=finish, **kw)  # type: ignore[arg-type]


# ---- text rules ----


def test_sentences_split_on_final_punctuation_and_lines() -> None:
    text = "Your card is on its way. It arrives in 3-5 days!\n- Track it in the app\n2. Call us? Sure."
    assert am.split_sentences(text) == [
        "Your card is on its way.",
        "It arrives in 3-5 days!",
        "Track it in the app",
        "Call us?",
        "Sure.",
    ]
    # "Sure." and "Call us?" carry no claim: not scored for groundedness.
    assert am.scored_sentences(text) == [
        "Your card is on its way.",
        "It arrives in 3-5 days!",
        "Track it in the app",
    ]
    assert am.split_sentences("The fee is 1.5 % of the amount.") == ["The fee is 1.5 % of the amount."]


def test_truncated_means_cut_by_the_cap_mid_sentence() -> None:
    assert am.is_truncated("You can top up by card and the money", "length")
    assert not am.is_truncated("You can top up by card.", "length")  # the cap fell at a full stop
    assert not am.is_truncated('He said "top up."', "length")
    assert not am.is_truncated("You can top up by card and the money", "stop")  # the model ended it
    assert not am.is_truncated("", "length")  # empty is its own figure
    # The unfinished tail of a truncated answer is not scored for groundedness; a finished one is.
    assert am.claim_sentences("Top up in the app. You can also use a bank", "length") == [
        "Top up in the app."
    ]
    assert am.claim_sentences("Top up in the app. You can also use a bank", "stop") == [
        "Top up in the app.",
        "You can also use a bank",
    ]


def test_repetition_rules() -> None:
    assert am.is_repetitive("email email email email")
    assert am.is_repetitive("Contact support in the app. " * 3)
    assert not am.is_repetitive("Contact support in the app. " * 2)
    assert not am.is_repetitive("email email email about the card")
    assert not am.is_repetitive("Open the app, go to Cards and choose Activate card, then enter the code.")
    # Contractions and possessives are one word each, so "the merchant's site" is a 3-gram, not a 4-gram.
    assert am.words("You're at the merchant's site") == ["you're", "at", "the", "merchant's", "site"]
    assert not am.is_repetitive(
        "Visit the merchant's site. Ask the merchant's staff. Call the merchant's bank."
    )


def test_pii_and_empty() -> None:
    assert am.has_pii({"CREDIT_CARD": 1}) and not am.has_pii({"CREDIT_CARD": 0}) and not am.has_pii(None)
    assert am.is_empty("  \n") and not am.is_empty("ok")


# ---- scoring with the packaged MiniLM ----


def test_verbatim_reference_answer_is_accurate_and_fully_grounded(scorer: AnswerScorer, references) -> None:
    ref = references["card_arrival"]
    score = scorer.score(answered("card_arrival", ref, [ref, references["lost_or_stolen_card"]]))
    assert score.accurate
    assert score.sentences == len(am.scored_sentences(ref)) > 1
    assert score.supported == score.sentences
    assert not (score.truncated or score.empty or score.repetitive or score.pii)


def test_answer_for_another_intent_is_inaccurate(scorer: AnswerScorer, references) -> None:
    score = scorer.score(answered("card_arrival", references["exchange_rate"], [references["card_arrival"]]))
    assert not score.accurate


def test_invented_sentence_is_unsupported(scorer: AnswerScorer, references) -> None:
    ref = references["card_arrival"]
    invented = "Our headquarters host a jazz festival with free pizza every second Thursday."
    score = scorer.score(answered("card_arrival", f"{ref} {invented}", [ref]))
    assert score.sentences == len(am.scored_sentences(ref)) + 1
    assert score.supported == score.sentences - 1
    # Without any knowledge, nothing is supported.
    assert scorer.score(answered("card_arrival", ref, [])).supported == 0


def test_cut_off_repetitive_pii_and_empty_answers(scorer: AnswerScorer, references) -> None:
    ref = references["card_arrival"]
    rows = [
        answered("card_arrival", ref, [ref]),
        answered(
            "card_arrival",
            "Your card usually arrives within a few working days and if it has not",
            [ref],
            finish="length",
        ),
        answered("card_arrival", "email email email email", [ref]),
        answered("card_arrival", "We sent it to <EMAIL_ADDRESS>.", [ref], output_pii={"EMAIL_ADDRESS": 1}),
        answered("card_arrival", "", [ref]),
    ]
    scores = [scorer.score(a) for a in rows]
    assert [s.truncated for s in scores] == [False, True, False, False, False]
    assert [s.repetitive for s in scores] == [False, False, True, False, False]
    assert [s.pii for s in scores] == [False, False, False, True, False]
    assert [s.empty for s in scores] == [False, False, False, False, True]
    assert not scores[4].accurate and scores[4].sentences == 0
    assert scores[1].sentences == 0  # only an unfinished sentence: nothing to check
    agg = am.aggregate(scores)
    assert agg.rows == 5
    assert agg.truncated_rate == pytest.approx(0.2) and agg.repetition_rate == pytest.approx(0.2)
    assert agg.empty_rate == pytest.approx(0.2) and agg.pii_leaks == 1
    assert agg.groundedness == pytest.approx(
        sum(s.supported for s in scores) / sum(s.sentences for s in scores)
    )


def test_out_of_scope_rows_are_right_when_turned_away_exactly_when_off_topic(
    scorer: AnswerScorer, references
) -> None:
    from finserve.serving.intent.scope import DEFAULT_SCOPE_ANSWER, OUT_OF_SCOPE

    ref = references["card_arrival"]
    run = VersionRun(
        [
            # off topic and turned away: right; its reply is not a knowledge claim (no sentence scored)
            answered(OUT_OF_SCOPE, DEFAULT_SCOPE_ANSWER, [ref], served_intent=OUT_OF_SCOPE),
            # off topic but answered from the nearest intent: wrong, whatever the answer says
            answered(OUT_OF_SCOPE, ref, [ref], served_intent="card_arrival"),
            # on topic but turned away: wrong
            answered("card_arrival", DEFAULT_SCOPE_ANSWER, [ref], served_intent=OUT_OF_SCOPE),
            # on topic and answered: scored as ever
            answered("card_arrival", ref, [ref], served_intent="card_arrival"),
        ],
        seconds=1.0,
    )
    scores = list(score_run(scorer, run).values())
    assert [s.accurate for s in scores] == [True, False, False, True]
    assert [s.sentences for s in scores[:3]] == [0, 0, 0] and scores[3].sentences > 0
    m = metrics("banking77@2.1.0", run, scores)
    assert m.answer_accuracy == 0.5 and m.groundedness == 1.0
    assert m.out_of_scope_rate == 0.5 and m.intent_accuracy == 0.5


def test_metrics_exclude_error_rows_and_report_speed(scorer: AnswerScorer, references) -> None:
    ref = references["card_arrival"]
    run = VersionRun(
        [
            answered(
                "card_arrival",
                ref,
                [ref],
                completion_tokens=40,
                latency_ms=100.0,
                served_intent="card_arrival",
                adapter="base@0.0.0",
            ),
            answered(
                "exchange_rate",
                references["exchange_rate"],
                [references["exchange_rate"]],
                completion_tokens=60,
                latency_ms=300.0,
                served_intent="card_arrival",
                adapter="base@0.0.0",
            ),
            Answered(gold="card_arrival", error="backend_unavailable"),
        ],
        seconds=2.0,
    )
    m = metrics("base@0.0.0", run, list(score_run(scorer, run).values()))
    assert m.rows == 2 and m.errors == 1
    assert m.answer_accuracy == 1.0 and m.groundedness == 1.0 and m.unsupported_sentences == 0
    assert m.intent_accuracy == 0.5
    assert m.latency_p50_ms == pytest.approx(200.0)
    assert m.tokens_per_s == pytest.approx(50.0)


def test_report_with_baseline_and_its_summary(scorer: AnswerScorer, references) -> None:
    intents = sorted(references)[:20]
    good = VersionRun(
        [answered(i, references[i], [references[i]], adapter="banking77@2.0.0") for i in intents], 10.0
    )
    # The baseline answers every row with the same unrelated answer: right on one row at most.
    bad = VersionRun(
        [answered(i, references[intents[0]], [references[i]], adapter="base@0.0.0") for i in intents], 10.0
    )
    report = build_report(scorer, "golden.csv", None, ("banking77@2.0.0", good), ("base@0.0.0", bad), 20.0)
    assert report.candidate.answer_accuracy == 1.0 and report.baseline is not None
    assert report.baseline.answer_accuracy == pytest.approx(1 / 20)
    c = report.comparison
    assert c is not None and c.candidate_only == 19 and c.baseline_only == 0
    assert c.verdict == "better" and c.p_value < 0.05 and c.ci_low > 0
    assert set(report.per_intent) == set(intents)
    summary = report.summary()
    assert summary.per_intent == {} and len(summary.model_dump_json()) < 4096


def test_answers_file_holds_every_row_with_its_scores(scorer: AnswerScorer, references, tmp_path) -> None:
    import json

    run = VersionRun(
        [
            answered(
                "card_arrival", references["card_arrival"], [references["card_arrival"]], adapter="base@0.0.0"
            ),
            Answered(gold="exchange_rate", error="backend_unavailable"),
        ],
        1.0,
    )
    path = tmp_path / "answers.jsonl"
    assert write_answers(path, scorer, [("route", run)]) == 2
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["version"] == "base@0.0.0" and first["row"] == 0 and first["score"]["accurate"] is True
    assert second["error"] == "backend_unavailable" and "score" not in second


# ---- the paired test on known tables ----


def table(both: int, cand_only: int, base_only: int, neither: int) -> tuple[list[bool], list[bool]]:
    cand = [True] * both + [True] * cand_only + [False] * base_only + [False] * neither
    base = [True] * both + [False] * cand_only + [True] * base_only + [False] * neither
    return cand, base


def test_paired_30_vs_10_discordant_is_better() -> None:
    t = am.paired_test(*table(40, 30, 10, 20))
    assert (t.candidate_only, t.baseline_only) == (30, 10)
    assert t.delta == pytest.approx(0.2)
    # Exact two-sided binomial on 40 discordant pairs, 30 for the candidate.
    assert t.p_value == pytest.approx(0.002221, rel=1e-3)
    assert t.verdict == "better" and t.ci_low > 0 and t.ci_high < 0.4
    worse = am.paired_test(*table(40, 10, 30, 20))
    assert worse.verdict == "worse" and worse.ci_high < 0
    assert worse.p_value == pytest.approx(t.p_value)


def test_paired_symmetric_is_no_difference() -> None:
    t = am.paired_test(*table(40, 15, 15, 30))
    assert t.delta == 0 and t.p_value == pytest.approx(1.0)
    assert t.verdict == "no-significant-difference"
    assert t.ci_low < 0 < t.ci_high
    same = am.paired_test([True, False, True], [True, False, True])
    assert (
        same.p_value == 1.0
        and same.ci_low == same.ci_high == 0
        and same.verdict == "no-significant-difference"
    )


@pytest.mark.parametrize(
    "cand_only, base_only", [(30, 10), (10, 30), (15, 15), (20, 12), (25, 12), (8, 0), (3, 0)]
)
def test_interval_excludes_zero_exactly_when_significant(cand_only: int, base_only: int) -> None:
    t = am.paired_test(*table(40, cand_only, base_only, 20))
    significant = t.p_value < 0.05
    assert significant == (not (t.ci_low <= 0 <= t.ci_high))
    assert t.verdict == (
        "no-significant-difference" if not significant else "better" if t.delta > 0 else "worse"
    )


def test_bootstrap_is_seeded() -> None:
    cand, base = table(40, 20, 12, 20)
    assert am.paired_test(cand, base, seed=3) == am.paired_test(cand, base, seed=3)
    with pytest.raises(ValueError):
        am.paired_test([True], [True, False])


def test_nearest_intent_and_support_on_known_vectors() -> None:
    refs = np.eye(3, dtype=np.float32)
    assert am.nearest_intent(np.array([0.1, 0.9, 0.0], dtype=np.float32), refs, ["a", "b", "c"]) == "b"
    support = am.support_scores(np.eye(2, dtype=np.float32), np.array([[1.0, 0.0]], dtype=np.float32))
    assert support.tolist() == [1.0, 0.0]
    assert am.support_scores(np.eye(2, dtype=np.float32), np.zeros((0, 2), dtype=np.float32)).tolist() == [
        0.0,
        0.0,
    ]
