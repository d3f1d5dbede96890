"""`finserve eval answers`: argument checks, and one run through the real pipeline (real model, small index)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kbutil import banking77_rows, build_index
from typer.testing import CliRunner

from finserve.cli import app
from finserve.contracts.evaluation import AnswerEvalReport
from finserve.training.data import write_csv

INTENTS = ("card_arrival", "exchange_rate", "lost_or_stolen_card", "activate_my_card")


def test_golden_set_needs_exactly_one_source(tmp_path: Path) -> None:
    data = write_csv([("where is my card", "card_arrival")], tmp_path / "golden.csv")
    both = CliRunner().invoke(app, ["eval", "answers", "--data", str(data), "--split", "validation"])
    assert both.exit_code == 2 and "exactly one of --data and --split" in both.output
    neither = CliRunner().invoke(app, ["eval", "answers"])
    assert neither.exit_code == 2 and "exactly one" in neither.output
    test_split = CliRunner().invoke(app, ["eval", "answers", "--split", "test"])
    assert test_split.exit_code == 2 and "only 'validation'" in test_split.output


def test_bad_adapter_names_the_option(tmp_path: Path) -> None:
    data = write_csv([("where is my card", "card_arrival")], tmp_path / "golden.csv")
    result = CliRunner().invoke(app, ["eval", "answers", "--data", str(data), "--baseline", "no-version"])
    assert result.exit_code == 2 and "--baseline" in result.output


def test_eval_group_lists_both_commands_and_keeps_the_old_form() -> None:
    result = CliRunner().invoke(app, ["eval", "--help"])
    assert result.exit_code == 0
    assert "intent" in result.output and "answers" in result.output and "--data" in result.output
    # Options of the old form before a subcommand are refused, not silently dropped.
    misplaced = CliRunner().invoke(app, ["eval", "--data", "pyproject.toml", "answers"])
    assert misplaced.exit_code == 2 and "after the subcommand" in misplaced.output


@pytest.mark.slow
def test_cli_answers_runs_the_real_pipeline(tmp_path: Path) -> None:
    """Five rows through guard -> retrieval (Milvus Lite) -> SmolLM2 -> output guard, scored, as one JSON object."""
    index = build_index(tmp_path / "milvus.db", banking77_rows(INTENTS, per_intent=8))
    rows = [
        r for r in banking77_rows(INTENTS, per_intent=10) if r not in banking77_rows(INTENTS, per_intent=8)
    ]
    golden_rows = [next(r for r in rows if r[1] == i) for i in INTENTS[1:]]
    golden_rows.append(("My card 4111 1111 1111 1111 has still not arrived", "card_arrival"))
    # The policy blocks e-mail addresses: that request fails (422) and is an error row, not a failed run.
    golden_rows.append(("Write to jane.doe@example.com about the rate", "exchange_rate"))
    golden = write_csv(golden_rows, tmp_path / "golden.csv")

    from finserve.serving.config import ServingConfig
    from finserve.serving.guard.config import EntityAction

    cfg = ServingConfig()
    cfg.retrieval = cfg.retrieval.model_copy(update={"milvus_uri": str(index), "redis_url": None})
    cfg.audit = cfg.audit.model_copy(update={"path": tmp_path / "audit.jsonl"})
    cfg.guard = cfg.guard.model_copy(update={"policies": {"EMAIL_ADDRESS": EntityAction.block}})
    cfg.generator = cfg.generator.model_copy(update={"registry": str(tmp_path / "registry")})
    # Every row must reach the model here: with 8 examples per intent indexed, a held-out row can sit below the
    # out-of-scope gate's threshold (tuned on the full index; the gate's own tests: test_pipeline_scope.py).
    cfg.intent = cfg.intent.model_copy(
        update={"scope": cfg.intent.scope.model_copy(update={"enabled": False})}
    )
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    termination, full, answers = (
        tmp_path / "termination-log",
        tmp_path / "report.json",
        tmp_path / "answers.jsonl",
    )

    result = CliRunner().invoke(
        app,
        [
            "eval",
            "answers",
            "--data",
            str(golden),
            "--adapter",
            "base@0.0.0",
            "--baseline",
            "base@0.0.0",
            "--max-tokens",
            "24",
            "--config",
            str(config),
            "--json",
            "--termination-log",
            str(termination),
            "--report",
            str(full),
            "--answers",
            str(answers),
        ],
    )
    assert result.exit_code == 0, result.output
    report = AnswerEvalReport.model_validate_json(result.stdout.strip().splitlines()[-1])
    assert report.candidate.rows == 4 and report.candidate.errors == 1
    assert report.candidate.adapter == "base@0.0.0"
    assert report.dataset == str(golden) and report.dataset_sha256
    assert report.candidate.tokens_per_s and report.candidate.latency_p50_ms
    assert 0 < report.candidate.mean_words <= 24  # at most 24 tokens each
    assert report.candidate.intent_accuracy is not None
    assert sum(r.rows for r in report.per_intent.values()) == 4 and set(report.per_intent) == set(INTENTS)
    # Four rows can never make a difference significant.
    assert report.comparison is not None and report.comparison.verdict == "no-significant-difference"
    assert AnswerEvalReport.model_validate_json(full.read_text()) == report
    summary = AnswerEvalReport.model_validate_json(termination.read_text())
    assert summary == report.summary() and len(termination.read_bytes()) < 4096
    # Every row of both versions, masked as the audit log holds it, with its scores.
    lines = [json.loads(line) for line in answers.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 10 and {line["version"] for line in lines} == {"base@0.0.0"}
    answered = [line for line in lines if line["error"] is None]
    assert len(answered) == 8 and all(line["score"]["words"] <= 24 and line["knowledge"] for line in answered)
    assert [line["error"] for line in lines if line["error"]] == ["pii_blocked"] * 2
    assert "4111" not in answers.read_text(encoding="utf-8") and "jane.doe" not in answers.read_text(
        encoding="utf-8"
    )
    assert any("<CREDIT_CARD>" in line["query"] for line in lines)
    # Every request went through the audited path: one record each (a warm-up per version, then the rows).
    from finserve.serving.audit import read_records

    assert len(list(read_records(tmp_path / "audit.jsonl"))) == 2 * (1 + 5)
