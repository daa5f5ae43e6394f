"""Small helpers shared by several test modules (imported as ``from helpers import ...``)."""

from __future__ import annotations

import csv
from pathlib import Path


def write_rows(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Write dict rows (all values text) with the csv module, so tests control every byte."""
    columns = columns or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([[row.get(c, "") for c in columns] for row in rows])
    return path


def one_line(text: str) -> str:
    """The single line of ``text``; fails on a traceback or on more than one line."""
    assert "Traceback" not in text, text
    lines = text.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    return lines[0]
