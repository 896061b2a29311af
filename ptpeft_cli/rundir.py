"""The run-directory contract, written by `train` and read by `eval`, `report` and `analyze`.

One module owns every file name and format of a run dir, so writers and readers cannot drift:
`.hydra/config.yaml` (resolved config), `metrics.json`, `predictions.json` (official result
format), `history.jsonl`, `weights/`, `error.txt` (a failed sweep job), plus the analysis files.
JSON is written atomically (temp file + rename) and strictly (NaN/inf become null).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ptpeft_cli.errors import UserError

CONFIG_FILE = Path(".hydra") / "config.yaml"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.json"
HISTORY_FILE = "history.jsonl"
ERROR_FILE = "error.txt"
WEIGHTS_DIR = "weights"
# Directories under an output root that hold run-like trees but are not runs.
NOT_RUNS = (".stage_cache",)


def finite(value: Any) -> Any:
    """Strict JSON has no NaN/inf (e.g. a ratio over a zero-rank base): null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write-then-rename, so a crash never leaves a truncated JSON file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(finite(payload), indent=2, sort_keys=isinstance(payload, dict), allow_nan=False))
    os.replace(tmp, path)


def write_config(run_dir: Path, cfg: DictConfig) -> None:
    path = run_dir / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    os.replace(tmp, path)


def read_config(run_dir: Path) -> DictConfig:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a ptpeft run dir (no {CONFIG_FILE})")
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    return cfg


RESUME_KEYS = ("resume", "resume_jobs")  # how a run was (re)started, not what it computes


def _flat(node: object, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def config_differences(saved: DictConfig, current: DictConfig) -> list[str]:
    """Dotted keys whose values differ between a run's saved config and a new one (resume refuses)."""
    before, after = (_flat(OmegaConf.to_container(c, resolve=True)) for c in (saved, current))
    return sorted(k for k in before.keys() | after.keys() if k not in RESUME_KEYS and before.get(k) != after.get(k))


def append_history(run_dir: Path, row: dict[str, Any]) -> None:
    with (run_dir / HISTORY_FILE).open("a") as handle:
        handle.write(json.dumps(finite(row)) + "\n")


def truncate_history(run_dir: Path, last_step: int) -> None:
    """Keep the history rows up to `last_step` (a resumed run writes the later ones again)."""
    path = run_dir / HISTORY_FILE
    if path.is_file():
        rows = [line for line in path.read_text().splitlines() if json.loads(line).get("step", 0) <= last_step]
        path.write_text("".join(f"{row}\n" for row in rows))


def read_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass
class RunRecord:
    """A run dir as tables see it: who it is (model, method label, task, seed) and its numbers."""

    path: Path
    config: DictConfig
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def model(self) -> str:
        return str(OmegaConf.select(self.config, "model.family", default="?"))

    @property
    def label(self) -> str:
        """The method's one name (e.g. pt_adapter), as the run dir, W&B and plots show it."""
        return str(OmegaConf.select(self.config, "method.label", default=None)
                   or OmegaConf.select(self.config, "method.name", default="?"))

    @property
    def task(self) -> str:
        return str(OmegaConf.select(self.config, "task.name", default="?"))

    @property
    def seed(self) -> int | None:
        return OmegaConf.select(self.config, "trainer.seed", default=None)


def read_run(path: Path) -> RunRecord:
    record = RunRecord(path=path, config=read_config(path))
    if (path / METRICS_FILE).is_file():
        record.metrics = read_metrics(path)
    elif (path / ERROR_FILE).is_file():
        lines = (path / ERROR_FILE).read_text().strip().splitlines()
        record.error = lines[-1] if lines else "failed"
    else:
        record.error = f"no {METRICS_FILE} (unfinished or crashed)"
    return record


def find_run_dirs(roots: list[Path]) -> list[Path]:
    """Run dirs under each root (a run dir itself, a sweep dir, or a tree of them), in order."""
    found: list[Path] = []
    for root in map(Path, roots):
        if not root.exists():
            raise UserError(f"{root} does not exist")
        if (root / CONFIG_FILE).is_file():
            runs = [root]
        else:
            runs = sorted(p.parent.parent for p in root.rglob(str(CONFIG_FILE))
                          if not any(part in NOT_RUNS for part in p.parts))
        found.extend(run for run in runs if run not in found)
    if not found:
        raise UserError(f"no ptpeft run dirs under {', '.join(map(str, roots))}")
    return found


def find_runs(roots: list[Path]) -> list[RunRecord]:
    return [read_run(path) for path in find_run_dirs(roots)]
