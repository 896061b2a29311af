"""Read run dirs (the contract in README/design.md) into flat rows for tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ptpeft_cli.errors import UserError


@dataclass
class RunRecord:
    path: Path
    model: str
    method: str
    task: str
    seed: int
    stage2: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str:
        """pt_peft runs are named by their stage-2 method, as in the paper (PT-LoRA, PT-Adapter)."""
        return f"pt_{self.stage2}" if self.method == "pt_peft" and self.stage2 else self.method


def read_run(path: Path) -> RunRecord:
    config_path = path / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{path} is not a ptpeft run dir (no .hydra/config.yaml)")
    cfg = OmegaConf.load(config_path)
    record = RunRecord(path=path, model=str(cfg.model.family), method=str(cfg.method.name),
                       task=str(cfg.task.name), seed=int(cfg.trainer.seed),
                       stage2=str(cfg.method.get("stage2")) if cfg.method.name == "pt_peft" else None)
    metrics_path, error_path = path / "metrics.json", path / "error.txt"
    if metrics_path.is_file():
        record.metrics = json.loads(metrics_path.read_text())
    elif error_path.is_file():
        lines = error_path.read_text().strip().splitlines()
        record.error = lines[-1] if lines else "failed"
    else:
        record.error = "no metrics.json (unfinished or crashed)"
    return record


def find_runs(roots: list[Path]) -> list[RunRecord]:
    """Run dirs under each root (a run dir itself, a sweep dir, or a tree of them), sorted."""
    found: list[Path] = []
    for root in roots:
        if not root.exists():
            raise UserError(f"{root} does not exist")
        if (root / ".hydra" / "config.yaml").is_file():
            found.append(root)
            continue
        found.extend(sorted(p.parent.parent for p in root.rglob(".hydra/config.yaml")
                            if ".stage_cache" not in p.parts))
    if not found:
        raise UserError(f"no ptpeft run dirs under {', '.join(map(str, roots))}")
    return [read_run(p) for p in found]


def headline_metric(task: str) -> str:
    return "eval/CIDEr" if task == "captioning" else "eval/vqa_accuracy"
