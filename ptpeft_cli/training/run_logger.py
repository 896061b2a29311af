"""Every side effect of a run's logging in one place: history.jsonl and Weights & Biases.

Rank 0 of a multi-process job holds the run's RunLogger; the other ranks get a NullLogger, so
every log call in the training code is the same on all ranks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ptpeft_cli import rundir


def wandb_mode(configured: str | None) -> str:
    """Offline unless the user asked for online (config, WANDB_MODE, or an API key in the env)."""
    if configured:
        return configured
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class RunLogger:
    """Appends one JSON line per log call to history.jsonl and mirrors it to W&B when enabled."""

    def __init__(self, run_dir: Path, cfg: DictConfig, run_name: str) -> None:
        self.run_dir = run_dir
        self.global_step = 0
        self._wandb_run = None
        if cfg.logger.name == "wandb":
            import wandb

            self._wandb_run = wandb.init(
                project=cfg.logger.project,
                entity=cfg.logger.entity,
                name=run_name,
                dir=str(run_dir),
                mode=wandb_mode(cfg.logger.mode),
                config=OmegaConf.to_container(cfg, resolve=True),
                tags=list(cfg.logger.tags),
                settings=wandb.Settings(silent=True, init_timeout=30, x_disable_stats=True),
                reinit="create_new",
            )

    def log(self, row: dict[str, Any], step: int | None = None) -> None:
        if step is not None:
            self.global_step = step
        row = {"step": self.global_step, **row}
        rundir.append_history(self.run_dir, row)
        if self._wandb_run is not None:
            self._wandb_run.log({k: v for k, v in row.items() if k != "step"}, step=self.global_step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self._wandb_run is not None:
            self._wandb_run.summary.update(metrics)

    def finish(self) -> None:
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None


class NullLogger(RunLogger):
    """What ranks other than 0 log to: nothing."""

    def __init__(self) -> None:  # noqa: D107 - no run dir, no W&B
        self._wandb_run = None
        self.global_step = 0

    def log(self, row: dict[str, Any], step: int | None = None) -> None:
        return None
