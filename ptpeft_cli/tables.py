"""Markdown and CSV tables, the two formats every ptpeft table is written in (analysis and reporting
both use them, so they sit below both layers). Hand-written: pandas needs `tabulate` for markdown."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def key_value_table(metrics: dict[str, object], keys: list[str] | None = None) -> str:
    """A two-column plain-text summary (the end of a run)."""
    keys = keys if keys is not None else sorted(metrics)
    width = max((len(k) for k in keys), default=0)
    return "\n".join(f"  {key:<{width}}  {metrics[key]:.4f}" if isinstance(metrics[key], float)
                     else f"  {key:<{width}}  {metrics[key]}" for key in keys)
