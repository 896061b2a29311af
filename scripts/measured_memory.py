"""Measured peak GPU memory (a gpu.json of `make bench-gpu`) next to model_sizes.py's estimate of
weights + gradients + AdamW state, per checkpoint, method and stage: the difference is what the
estimate leaves out (activations at that batch and length, logits, the allocator's slack).

Only rows a GPU measured at real size are shown; `--tiny` and CPU rows are counted and left out
(their peak is a toy model's RSS, not a GPU's memory).

    python scripts/model_sizes.py --measured outputs/bench/gpu.json
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

GIB = 1024**3
# gpu.json's method labels (and PT-PEFT's stage names) -> model_sizes.py's columns
COLUMNS = {"full": "full", "lora": "lora", "adapter": "adapter", "prefix": "prefix input",
           "pt_lora": "pt_peft (prefix+LoRA)", "pt_adapter": "pt_adapter"}


def column(row: dict[str, Any]) -> str | None:
    """The estimate a row compares with: a PT-PEFT stage 1 trains the prefix alone."""
    if row["method"] == "none":
        return None
    return COLUMNS["prefix"] if row.get("stage") == "prefix" else COLUMNS[row["method"]]


def measured_table(report: dict[str, Any], estimate: Callable[[str, str | None], float | None]) -> str:
    """Markdown table; `estimate(checkpoint, column)` = estimated GiB (column None: bf16 weights)."""
    measured = [r for r in report["rows"] if r.get("device") == "cuda" and r.get("size") == "real"]
    left_out = len(report["rows"]) - len(measured)
    gpu = report.get("machine", {}).get("gpu") or "no GPU"
    lines = [f"Measured on {gpu} ({report.get('date', '?')}): peak GPU memory of `make bench-gpu` rows.", "",
             "| checkpoint | method | stage | batch | tokens/sample | GC | estimate (GiB) | peak allocated (GiB) | "
             "peak reserved (GiB) | allocated - estimate |", "|---|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for row in measured:
        guess = estimate(row["checkpoint"], column(row))
        rest = row["peak_mem_gib"] - guess if guess is not None and row.get("peak_mem_gib") is not None else None
        cells = [row["checkpoint"], row["method"], row.get("stage") or "-", str(row["batch_size"]),
                 _num(row.get("seq_len"), "{:.0f}"), "yes" if row.get("gradient_checkpointing") else "no",
                 _num(guess), _num(row.get("peak_mem_gib")), _num(row.get("peak_reserved_gib")), _num(rest)]
        lines.append("| " + " | ".join(cells) + " |")
    if not measured:
        lines.append("| (no row of this file was measured on a GPU) | | | | | | | | | |")
    if left_out:
        lines += ["", f"{left_out} row(s) of this file were not measured on a GPU at real size (`--tiny` or CPU) "
                      "and are left out."]
    return "\n".join(lines)


def _num(value: float | None, pattern: str = "{:.1f}") -> str:
    return "-" if value is None else pattern.format(value)
