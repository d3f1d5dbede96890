"""Banking77 rows for training: the team's one train/validation split, optional subsets, checksums.

The split is retrieval's ``default_split`` (80/20, stratified, seed 77), so the validation rows
are never in the retrieval index and the served pipeline is evaluated on rows it has not seen.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    dev: list[Row] = field(default_factory=list)  # carved out of the training part; not trained on
    dev_index: list[int] = field(default_factory=list)  # each dev row's position in index_rows


def per_intent_indices(rows: Sequence[Row], per_intent: int, seed: int) -> list[int]:
    """Positions of at most ``per_intent`` rows of each intent, drawn with ``seed``, ascending."""
    by_intent: dict[str, list[int]] = defaultdict(list)
    for i, (_, intent) in enumerate(rows):
        by_intent[intent].append(i)
    rng = random.Random(seed)
    keep: set[int] = set()
    for intent in sorted(by_intent):
        idx = by_intent[intent]
        keep.update(idx if len(idx) <= per_intent else rng.sample(idx, per_intent))
    return sorted(keep)


def per_intent_subset(rows: Sequence[Row], per_intent: int, seed: int) -> list[Row]:
    """At most ``per_intent`` rows of each intent, drawn with ``seed``, in the input order."""
    return [rows[i] for i in per_intent_indices(rows, per_intent, seed)]


def load_splits(
    csv_path: str | Path,
    max_train_per_intent: int | None = None,
    max_validation_per_intent: int | None = None,
    seed: int = 0,
    dev_per_intent: int | None = None,
) -> Splits:
    """The shared split; ``dev_per_intent`` rows of each intent move from training to a dev split.

    The dev rows choose the epoch and the mix weight, so validation is only ever reported. They
    stay in ``index_rows`` (the retrieval index is built from the whole training part), so their
    retrieval vote must leave each row itself out (``dev_index``).
    """
    path = Path(csv_path)
    rows = read_banking77(path)
    if not rows:
        raise ValueError(f"{path} holds no rows")
    train, validation = default_split(rows)
    index_rows = list(train)
    dev: list[Row] = []
    dev_index: list[int] = []
    if dev_per_intent is not None:
        dev_index = per_intent_indices(index_rows, dev_per_intent, seed + 1)
        dev = [index_rows[i] for i in dev_index]
        held = set(dev_index)
        train = [row for i, row in enumerate(index_rows) if i not in held]
    if max_train_per_intent is not None:
        train = per_intent_subset(train, max_train_per_intent, seed)
    if max_validation_per_intent is not None:
        validation = per_intent_subset(validation, max_validation_per_intent, seed)
    labels = sorted({intent for _, intent in rows})
    return Splits(
        train=train,
        validation=validation,
        index_rows=index_rows,
        labels=labels,
        source=path,
        checksum=sha256_file(path),
        dev=dev,
        dev_index=dev_index,
    )


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
            raise ValueError(
                f"{path}: missing column(s) {', '.join(sorted(missing))}; expected text,category"
            )
        return [(rec["text"], rec["category"]) for rec in reader]
