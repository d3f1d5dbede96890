"""fit()'s argument checks: they run before any model work, so no model is needed here."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_configs import tiny_config

from finserve.training.config import TrainConfig
from finserve.training.trainer import QueryVectors, fit

ROWS = [("where is my card", "card_arrival"), ("rate for euros", "exchange_rate")]
LABELS = ["card_arrival", "exchange_rate"]


def vectors(train: int, val: int) -> QueryVectors:
    return QueryVectors(
        embedder="e", train=np.zeros((train, 3), np.float32), validation=np.zeros((val, 3), np.float32)
    )


def test_a_query_head_needs_query_vectors_and_only_it_gets_them() -> None:
    with_query = TrainConfig.model_validate(tiny_config(head={"query_embedding": True}))
    with pytest.raises(ValueError, match="query_embedding needs query vectors"):
        fit(with_query, None, None, "cpu", ROWS, ROWS, LABELS, progress=False)
    plain = TrainConfig.model_validate(tiny_config())
    with pytest.raises(ValueError, match="query_embedding needs query vectors"):
        fit(plain, None, None, "cpu", ROWS, ROWS, LABELS, progress=False, queries=vectors(2, 2))


def test_query_vectors_must_match_the_rows() -> None:
    cfg = TrainConfig.model_validate(tiny_config(head={"query_embedding": True}))
    with pytest.raises(ValueError, match="one to one"):
        fit(cfg, None, None, "cpu", ROWS, ROWS, LABELS, progress=False, queries=vectors(2, 1))
    with pytest.raises(ValueError, match="one to one"):  # dev rows without dev vectors
        fit(
            cfg,
            None,
            None,
            "cpu",
            ROWS,
            ROWS,
            LABELS,
            progress=False,
            queries=vectors(2, 2),
            dev_rows=ROWS[:1],
        )
