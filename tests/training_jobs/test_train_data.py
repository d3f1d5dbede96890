"""The training split is retrieval's default split; subsets and CSV round trips."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from finserve.serving.paths import banking77_csv
from finserve.serving.retrieval.kb import default_split, read_banking77
from finserve.training.data import load_splits, per_intent_subset, read_eval_csv, write_csv


def test_splits_are_the_shared_default_split() -> None:
    splits = load_splits(banking77_csv())
    train, val = default_split(read_banking77(banking77_csv()))
    assert splits.train == train and splits.validation == val
    assert len(splits.labels) == 77
    assert len(splits.checksum) == 64


def test_per_intent_subset_caps_each_intent_and_is_seeded() -> None:
    rows = [(f"t{i}", "a") for i in range(10)] + [(f"u{i}", "b") for i in range(3)]
    sub = per_intent_subset(rows, 4, seed=1)
    assert Counter(c for _, c in sub) == {"a": 4, "b": 3}
    assert sub == per_intent_subset(rows, 4, seed=1)
    assert sub != per_intent_subset(rows, 4, seed=2)
    assert [r for r in rows if r in sub] == sub  # input order kept


def test_dev_split_is_carved_out_of_the_training_part_and_stays_in_the_index() -> None:
    full = load_splits(banking77_csv())
    splits = load_splits(banking77_csv(), dev_per_intent=3)
    assert splits.validation == full.validation and splits.index_rows == full.train
    assert Counter(c for _, c in splits.dev) == {label: 3 for label in splits.labels}
    assert [splits.index_rows[i] for i in splits.dev_index] == splits.dev
    held = set(splits.dev_index)
    assert splits.train == [r for i, r in enumerate(full.train) if i not in held]
    assert len(splits.train) + len(splits.dev) == len(full.train)
    assert splits.dev == load_splits(banking77_csv(), dev_per_intent=3).dev  # seeded
    assert full.dev == [] and full.dev_index == []


def test_eval_csv_round_trip_and_missing_column(tmp_path: Path) -> None:
    rows = [("card, with a comma", "card_arrival"), ('a "quoted" text', "exchange_rate")]
    assert read_eval_csv(write_csv(rows, tmp_path / "x.csv")) == rows
    (tmp_path / "bad.csv").write_text("text,label\nhello,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="category"):
        read_eval_csv(tmp_path / "bad.csv")
