"""Hydra callback: one screen summarising every job of a sweep, failed ones with why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ptpeft_cli.launch import launched_rank
from ptpeft_cli.rundir import find_runs
from ptpeft_cli.tables import markdown_table
from ptpeft_cli.tasks import TASKS


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def _headline(task: str, metrics: dict[str, Any]) -> str:
    """The task's headline metric, named (sweeps may mix tasks)."""
    key = TASKS.get(task).headline_metric
    return f"{key.split('/', 1)[1]} {_cell(metrics.get(key))}"


def summarise(sweep_dir: Path) -> str:
    rows = []
    for run in find_runs([sweep_dir]):
        m = run.metrics
        rows.append([run.path.name, run.label, run.task,
                     "failed: " + run.error if run.error else "ok",
                     _headline(run.task, m), _cell(m.get("eval/object_precision")),
                     _cell(m.get("params/trainable_share")), _cell(m.get("rep/effective_rank_ratio")),
                     _cell(m.get("time/total_s"))])
    header = ["job", "method", "task", "status", "headline metric", "obj. prec.", "trainable share",
              "eff. rank ratio", "time (s)"]
    return markdown_table(header, rows)


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists() or launched_rank() != 0:  # a sweep under torchrun: rank 0 writes and speaks
            return
        table = summarise(sweep_dir)
        (sweep_dir / "summary.md").write_text(table + "\n")
        print(f"\n{table}\nsweep dir: {sweep_dir}")
