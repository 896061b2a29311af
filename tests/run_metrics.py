"""What two runs of the same training must agree on: every metric but the machine-dependent ones
(wall time, throughput, peak memory), which differ between identical runs."""

from __future__ import annotations

import json
from pathlib import Path

MACHINE_DEPENDENT = ("time/", "throughput/", "memory/")


def comparable_metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if not k.startswith(MACHINE_DEPENDENT)}
