"""The eval driver: metric math on known predictions, error accounting, and the real pipeline via the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.intent import IntentClassifier, IntentConfig, IntentPrediction
from finserve.training.data import write_csv
from finserve.training.evaluate import ERROR_LABEL, evaluate


@dataclass
class Hit:
    intent: str
    score: float
    text: str = ""


@dataclass
class Outcome:
    intent: IntentPrediction
    pii: dict[str, int] = field(default_factory=dict)


class VotePath:
    """The pipeline's classify() shape over a real classifier (vote method) with fixed neighbours per text."""

    def __init__(self, neighbours: dict[str, str]) -> None:
        self.neighbours = neighbours
        self.classifier = IntentClassifier(IntentConfig(method="vote"))
        self.calls = 0

    async def classify(
        self, text: str, adapter: AdapterRef | None = None, tenant: str = "default"
    ) -> Outcome:
        self.calls += 1
        if text == "backend down":
            raise ConnectionError("vector store unavailable")
        pred = await self.classifier.classify(
            text, adapter or AdapterRef.base(), [Hit(self.neighbours[text], 0.9)]
        )
        return Outcome(pred, {"CREDIT_CARD": 1} if "4111" in text else {})


ROWS = [
    ("card late", "card_arrival"),
    ("card still late", "card_arrival"),
    ("rate?", "exchange_rate"),
    ("stolen 4111 1111 1111 1111", "lost_or_stolen_card"),
    ("backend down", "exchange_rate"),
]
NEIGHBOURS = {
    "card late": "card_arrival",
    "card still late": "lost_or_stolen_card",  # wrong on purpose
    "rate?": "exchange_rate",
    "stolen 4111 1111 1111 1111": "lost_or_stolen_card",
}


async def test_known_predictions_give_known_metrics() -> None:
    path = VotePath(NEIGHBOURS)
    report = await evaluate(path, ROWS, concurrency=3)
    assert report.n == 5
    assert report.accuracy == pytest.approx(3 / 5)
    scores = {s.intent: s for s in report.per_intent}
    assert scores["card_arrival"].recall == pytest.approx(1 / 2) and scores["card_arrival"].precision == 1.0
    assert scores["exchange_rate"].recall == pytest.approx(1 / 2) and scores["exchange_rate"].precision == 1.0
    assert scores["lost_or_stolen_card"].precision == pytest.approx(1 / 2)
    f1 = [2 / 3, 2 / 3, 2 / 3]  # card_arrival, exchange_rate, lost_or_stolen_card
    assert report.macro_f1 == pytest.approx(sum(f1) / 3)
    pairs = {(p.gold, p.predicted): p.count for p in report.confused}
    assert pairs == {("card_arrival", "lost_or_stolen_card"): 1, ("exchange_rate", ERROR_LABEL): 1}
    assert report.errors == {"ConnectionError": 1}
    assert report.methods == {"vote": 4}
    assert report.pii_entities == {"CREDIT_CARD": 1}
    assert path.calls == 6  # one untimed warm-up, then every row once
    assert report.queries_per_s > 0
    data = json.loads(report.model_dump_json())
    assert {"accuracy", "macro_f1", "per_intent", "confused", "queries_per_s"} <= data.keys()


async def test_empty_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        await evaluate(VotePath({}), [])


@pytest.mark.slow
def test_cli_eval_runs_the_real_pipeline(trained_registry: AdapterRegistry, tmp_path: Path) -> None:
    """`finserve eval --json` over guard -> retrieval (Milvus Lite) -> the tiny adapter's head."""
    from typer.testing import CliRunner

    from finserve.cli import app
    from finserve.serving.config import ServingConfig
    from finserve.serving.retrieval import RetrievalConfig, ingest

    split = Path(trained_registry.root).parent / "split"
    index = tmp_path / "milvus.db"
    intents = ("card_arrival", "exchange_rate", "lost_or_stolen_card")
    train = [r for r in _read(split / "train.csv") if r[1] in intents][:30]
    ingest(RetrievalConfig(milvus_uri=str(index), redis_url=None), rows=train, progress=False)
    rows = [r for r in _read(split / "validation.csv") if r[1] in intents][:6]
    rows.append(("My card 4111 1111 1111 1111 never arrived", "card_arrival"))
    data = write_csv(rows, tmp_path / "eval.csv")

    cfg = ServingConfig()
    cfg.retrieval = cfg.retrieval.model_copy(update={"milvus_uri": str(index), "redis_url": None})
    cfg.audit = cfg.audit.model_copy(update={"path": tmp_path / "audit.jsonl"})
    cfg.generator = cfg.generator.model_copy(update={"registry": trained_registry.root})
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")

    result = CliRunner().invoke(
        app,
        ["eval", "--data", str(data), "--adapter", "tiny-intent@0.1.0", "--json", "--config", str(config)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["n"] == 7 and report["adapter"] == "tiny-intent@0.1.0"
    assert report["methods"] == {"head": 7} and report["errors"] == {}
    assert report["pii_entities"].get("CREDIT_CARD") == 1
    assert 0.0 <= report["accuracy"] <= 1.0 and 0.0 <= report["macro_f1"] <= 1.0
    assert report["queries_per_s"] > 0

    base = CliRunner().invoke(
        app, ["eval", "--data", str(data), "--adapter", "base@0.0.0", "--json", "--config", str(config)]
    )
    assert base.exit_code == 0, base.output
    voted = json.loads(base.stdout[base.stdout.index("{") :])
    assert voted["methods"] == {"vote": 7}


def _read(path: Path) -> list[tuple[str, str]]:
    from finserve.training.data import read_eval_csv

    return read_eval_csv(path)
