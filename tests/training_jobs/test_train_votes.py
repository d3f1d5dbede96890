"""Training scores the served mix: the vectorised rule equals the classifier's per-request rule."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from finserve.contracts import AdapterRegistry
from finserve.serving.intent.vote import best, mix
from finserve.training.votes import NeighbourIndex, mixed_predictions

LABELS = ["a", "b", "c", "d"]


def test_vectorised_mix_matches_the_serving_rule_row_by_row() -> None:
    rng = random.Random(3)
    for _ in range(200):
        head = np.array([[rng.random() for _ in LABELS]], dtype=np.float32)
        head /= head.sum()
        votes = {label: rng.random() for label in rng.sample(LABELS, rng.randint(0, 3))}
        total = sum(votes.values())
        votes = {k: v / total for k, v in votes.items()} if votes else {}
        weight = rng.choice([0.0, 0.3, 0.5, 0.9])
        served = best(mix(dict(zip(LABELS, head[0].tolist(), strict=True)), votes, weight))[0]
        assert mixed_predictions(head, LABELS, [votes], weight) == [served]


def test_ties_go_to_the_first_label_like_serving() -> None:
    head = np.array([[0.25, 0.25, 0.25, 0.25]], dtype=np.float32)
    assert mixed_predictions(head, LABELS, [{}], 0.0) == ["a"]
    assert best(mix(dict(zip(LABELS, [0.25] * 4, strict=True)), {}, 0.0))[0] == "a"


@pytest.mark.slow
def test_neighbour_votes_find_the_query_itself_first() -> None:
    rows = [
        ("where is my new card", "card_arrival"),
        ("what is the euro exchange rate", "exchange_rate"),
        ("my card was stolen", "lost_or_stolen_card"),
    ]
    votes = NeighbourIndex(rows).votes([t for t, _ in rows], k=2, temperature=0.02)
    assert [max(v, key=v.get) for v in votes] == [c for _, c in rows]
    assert all(abs(sum(v.values()) - 1.0) < 1e-6 for v in votes)


@pytest.mark.slow
def test_dev_votes_leave_the_row_itself_out() -> None:
    rows = [
        ("where is my new card", "card_arrival"),
        ("my new card has not arrived", "card_arrival"),
        ("what is the euro exchange rate", "exchange_rate"),
        ("my card was stolen", "lost_or_stolen_card"),
    ]
    index = NeighbourIndex(rows)
    # Querying row 3 with itself left out: its own intent has no other example, so it cannot win.
    own = index.votes(None, k=2, temperature=0.02, exclude=[3])[0]
    assert "lost_or_stolen_card" not in own and abs(sum(own.values()) - 1.0) < 1e-6
    # Row 0 still finds its paraphrase (row 1), and the text query equals the index-row query.
    by_text = index.votes([rows[0][0]], k=1, temperature=0.02, exclude=[0])[0]
    assert by_text == index.votes(None, k=1, temperature=0.02, exclude=[0])[0] == {"card_arrival": 1.0}
    with pytest.raises(ValueError):
        index.votes(None, k=1, temperature=0.02)


@pytest.fixture
def six_intents(tmp_path: Path) -> tuple[list[tuple[str, str]], Path]:
    """A small CSV (6 intents, 15 real rows each) so the vote's index embeds in seconds: rows and file."""
    from finserve.serving.paths import banking77_csv
    from finserve.training.data import read_eval_csv, write_csv

    intents = {
        "card_arrival",
        "exchange_rate",
        "lost_or_stolen_card",
        "top_up_failed",
        "pin_blocked",
        "request_refund",
    }
    seen: dict[str, int] = {}
    rows = []
    for text, cat in read_eval_csv(banking77_csv()):
        if cat in intents and seen.get(cat, 0) < 15:
            rows.append((text, cat))
            seen[cat] = seen.get(cat, 0) + 1
    return rows, write_csv(rows, tmp_path / "six.csv")


@pytest.mark.slow
def test_job_with_retrieval_weight_reports_served_and_head_accuracy(
    tmp_path: Path, base_model_dir: Path, six_intents: tuple[list[tuple[str, str]], Path]
) -> None:
    from tiny_configs import tiny_config

    from finserve.training.config import TrainConfig
    from finserve.training.job import run_job

    rows, csv = six_intents
    cfg = tiny_config(
        data={"csv": str(csv), "max_train_per_intent": None, "max_validation_per_intent": None},
        head={"retrieval_weight": 0.5},
        optim={"epochs": 2},
    )
    result = run_job(
        TrainConfig.model_validate(cfg),
        AdapterRegistry(tmp_path / "reg"),
        base_model_path=base_model_dir,
        progress=False,
    )
    m = result.manifest
    assert set(m.metrics) >= {"accuracy", "macro_f1", "head_accuracy"}
    sweep = m.training["retrieval_weight_sweep"]
    assert set(sweep) == {"0.0", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "1.0"}
    assert sweep["0.5"] == pytest.approx(m.metrics["accuracy"])  # the served weight is what was reported
    assert sweep["0.0"] == pytest.approx(m.metrics["head_accuracy"])
    assert len(rows) == 90 and (result.train_rows, result.validation_rows) == (72, 18)


@pytest.mark.slow
def test_job_with_a_dev_split_picks_on_dev_and_serves_the_chosen_weight(
    tmp_path: Path, base_model_dir: Path, six_intents: tuple[list[tuple[str, str]], Path]
) -> None:
    from tiny_configs import tiny_config

    from finserve.serving.intent.head import load_head
    from finserve.training.config import TrainConfig
    from finserve.training.job import run_job

    _, csv = six_intents
    cfg = tiny_config(
        data={
            "csv": str(csv),
            "max_train_per_intent": None,
            "max_validation_per_intent": None,
            "dev_per_intent": 2,
        },
        head={"retrieval_weight": 0.5, "weight_from_dev": True},
        optim={"epochs": 2, "patience": 2},
    )
    registry = AdapterRegistry(tmp_path / "reg")
    result = run_job(
        TrainConfig.model_validate(cfg), registry, base_model_path=base_model_dir, progress=False
    )
    m = result.manifest
    assert (result.train_rows, m.training["dev_rows"], result.validation_rows) == (60, 12, 18)
    assert all(e.dev_accuracy is not None for e in result.epochs)
    dev_sweep = m.training["dev_retrieval_weight_sweep"]
    chosen = m.training["retrieval_weight"]
    assert dev_sweep[f"{chosen:.1f}"] == max(dev_sweep.values())
    assert m.metrics["accuracy"] == pytest.approx(m.training["retrieval_weight_sweep"][f"{chosen:.1f}"])
    spec, _, _ = load_head(registry.fetch(m.ref)[1])
    assert spec.retrieval_weight == chosen  # what is served is what was measured
