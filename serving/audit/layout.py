"""Where the log's files lie: the active file, its rotated predecessors, the head file and the lock.

``audit.jsonl`` is written to; rotation renames it after the number of its first line
(``audit.000000001.jsonl``, ``audit.000004711.jsonl``, ...: sorted by number, oldest first) and starts
a new one, the chain continuing across them. ``audit.jsonl.head``
holds a copy of the latest checkpoint, ``audit.jsonl.lock`` is what writers ``flock``.
"""

from __future__ import annotations

import re
from pathlib import Path

_DIGITS = 9


def _numbered(active: Path) -> list[tuple[int, Path]]:
    pattern = re.compile(re.escape(active.stem) + rf"\.(\d{{{_DIGITS},}})" + re.escape(active.suffix) + "$")
    if not active.parent.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in active.parent.iterdir() if (m := pattern.match(p.name)))


def rotated_files(active: Path) -> list[Path]:
    """The rotated files of the log whose active file is `active`, oldest first."""
    return [p for _, p in _numbered(active)]


def all_files(active: Path) -> list[Path]:
    """Every file of the log in chain order: the rotated ones, then the active one if it exists."""
    return rotated_files(active) + ([active] if active.exists() else [])


def rotated_name(active: Path, first_line: int) -> Path:
    """Where the active file goes when rotated, named after the number of its first line."""
    return active.with_name(f"{active.stem}.{first_line:0{_DIGITS}d}{active.suffix}")


def head_file(active: Path) -> Path:
    return active.with_name(active.name + ".head")


def lock_file(active: Path) -> Path:
    return active.with_name(active.name + ".lock")
