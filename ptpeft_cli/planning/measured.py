"""Throughput and memory measured on real GPUs: the rows `make bench-gpu` writes
(outputs/bench/gpu.json: {"machine": {...}, "settings": {...}, "rows": [...]}), read as they are.

The package ships such a table (measured_gpu.json, so an installed wheel plans offline); a fresh
bench file given to `ptpeft plan bench=PATH` adds its rows, which win over the shipped ones on
equal terms. Only rows of real-size checkpoints measured on a GPU are read: `--tiny`'s rows
(`size: tiny`, `device: cpu`) time and size a toy model on the CPU under a real checkpoint's name.
A row's card is the machine's `gpu` (the name torch reports); its `device` is the device type
(`cuda`), or a card's name in hand-written rows such as the shipped ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptpeft_cli.errors import UserError
from ptpeft_cli.training.gpus import find_gpu

SHIPPED = Path(__file__).resolve().parent / "measured_gpu.json"


@dataclass(frozen=True)
class Measured:
    """One bench row, with the card it ran on and where it was read from."""

    row: dict[str, Any]
    card: str
    peak_tflops: float | None
    origin: str

    def get(self, key: str) -> Any:
        return self.row.get(key)

    def describe(self) -> str:
        stage = f"/{self.row['stage']}" if self.row.get("stage") else ""
        checkpointing = ", checkpointing" if self.row.get("gradient_checkpointing") else ""
        return f"{self.row['checkpoint']} {self.row['method']}{stage} (batch {self.row.get('batch_size')}" \
               f"{checkpointing}) on {self.card}"


def _read(path: Path) -> list[Measured]:
    try:
        doc = json.loads(path.read_text())
        rows, machine = doc["rows"], doc.get("machine") or {}
    except FileNotFoundError:
        raise UserError(f"bench={path}: no such file; `make bench-gpu` writes outputs/bench/gpu.json") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserError(f"bench={path} is not a `make bench-gpu` table ({{'machine', 'rows'}}): {error}") from None
    found = []
    for row in rows:
        if (row.get("size") or "real") != "real" or row.get("device") == "cpu":
            continue
        device = row.get("device")
        card = str((device if device not in (None, "cuda") else None) or machine.get("gpu") or "unknown GPU")
        known = find_gpu(card)
        peak = known.bf16_tflops if known else machine.get("peak_bf16_tflops")
        found.append(Measured(row=row, card=known.name if known else card, peak_tflops=peak, origin=str(path)))
    return found


def measured_rows(extra: str | None = None) -> list[Measured]:
    """The fresh file's rows first (they win ties), then the shipped ones."""
    return (_read(Path(extra)) if extra else []) + _read(SHIPPED)
