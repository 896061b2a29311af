"""Hydra callback: one screen summarising every job of a sweep, failed ones with why; and the
sweep's exit code, which says whether every job finished."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ptpeft_cli.errors import RunStopped
from ptpeft_cli.launch import launched_rank
from ptpeft_cli.rundir import RunRecord, find_runs
from ptpeft_cli.tables import markdown_table
from ptpeft_cli.tasks import TASKS


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def _headline(task: str, metrics: dict[str, Any]) -> str:
    """The task's headline metric, named (sweeps may mix tasks)."""
    key = TASKS.get(task).headline_metric
    return f"{key.split('/', 1)[1]} {_cell(metrics.get(key))}"


def summarise(runs: list[RunRecord]) -> str:
    rows = []
    for run in runs:
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
        """Write and print the summary; then, if any job failed or stopped, say how many and
        where to look on stderr and end the sweep with exit 1 (Hydra itself would exit 0: a failed
        job only records its error.txt so that the others go on)."""
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists() or launched_rank() != 0:  # a sweep under torchrun: rank 0 writes and speaks
            return
        runs = find_runs([sweep_dir])
        table = summarise(runs)
        try:
            (sweep_dir / "summary.md").write_text(table + "\n")
        except OSError as error:  # e.g. a full disk: the table is still printed below
            logging.getLogger("ptpeft").warning("could not write %s: %s", sweep_dir / "summary.md", error)
        print(f"\n{table}\nsweep dir: {sweep_dir}")
        failed = [run for run in runs if run.error]
        if failed:
            sys.stdout.flush()
            print(f"ptpeft: sweep failed: {len(failed)} of {len(runs)} job(s) failed or stopped "
                  f"({', '.join(run.path.name for run in failed)}); see error.txt in each job's dir and "
                  f"{sweep_dir / 'summary.md'}", file=sys.stderr)
            raise SystemExit(RunStopped.exit_code)
