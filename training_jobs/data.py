"""Banking77 rows for training: the team's one train/validation split, optional subsets, checksums.

The split is retrieval's ``default_split`` (80/20, stratified, seed 77), so the validation rows
are never in the retrieval index and the served pipeline is evaluated on rows it has not seen.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from finserve.contracts.registry import sha256_file
from finserve.serving.retrieval.kb import Row, default_split, read_banking77

DATA_ATTRIBUTION = (
    "Banking77 (Casanueva et al., 2020, 'Efficient Intent Detection with Dual Sentence Encoders'), "
    "CC BY 4.0, https://github.com/PolyAI-LDN/task-specific-datasets"
)


@dataclass(frozen=True)
class Splits:
    """Train and validation rows plus what identifies the data they came from."""

    train: list[Row]
    validation: list[Row]
    index_rows: list[Row]  # the whole training part: what the retrieval index holds, subset or not
    labels: list[str]  # every intent of the full file, sorted: the head's output order
    source: Path
    checksum: str  # sha256 of the source CSV


def per_intent_subset(rows: Sequence[Row], per_intent: int, seed: int) -> list[Row]:
    """At most ``per_intent`` rows of each intent, drawn with ``seed``, in the input order."""
    by_intent: dict[str, list[int]] = defaultdict(list)
    for i, (_, intent) in enumerate(rows):
        by_intent[intent].append(i)
    rng = random.Random(seed)
    keep: set[int] = set()
    for intent in sorted(by_intent):
        idx = by_intent[intent]
        keep.update(idx if len(idx) <= per_intent else rng.sample(idx, per_intent))
    return [row for i, row in enumerate(rows) if i in keep]


def load_splits(
    csv_path: str | Path,
    max_train_per_intent: int | None = None,
    max_validation_per_intent: int | None = None,
    seed: int = 0,
) -> Splits:
    path = Path(csv_path)
    rows = read_banking77(path)
    if not rows:
        raise ValueError(f"{path} holds no rows")
    train, validation = default_split(rows)
    index_rows = list(train)
    if max_train_per_intent is not None:
        train = per_intent_subset(train, max_train_per_intent, seed)
    if max_validation_per_intent is not None:
        validation = per_intent_subset(validation, max_validation_per_intent, seed)
    labels = sorted({intent for _, intent in rows})
    return Splits(train=train, validation=validation, index_rows=index_rows, labels=labels, source=path, checksum=sha256_file(path))


def write_csv(rows: Sequence[Row], path: str | Path) -> Path:
    """Rows as a ``text,category`` CSV (the format ``finserve eval --data`` reads)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "category"])
        writer.writerows(rows)
    return out


def read_eval_csv(path: str | Path) -> list[Row]:
    """``text,category`` rows; a missing column is an error naming the file."""
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"text", "category"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected text,category")
        return [(rec["text"], rec["category"]) for rec in reader]
