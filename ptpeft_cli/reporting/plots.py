"""The study's figure per task: the headline metric per method, mean with the seeds' std as error
bars, in the table's row order (matplotlib, headless)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptpeft_cli.rundir import RunRecord


def save_bar_chart(task: str, runs: list[RunRecord], metric: str, path: Path,
                   order: Callable[[str], Any] = str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        if metric in run.metrics and run.metrics[metric] is not None:
            label = run.label if len({r.model for r in runs}) == 1 else f"{run.model}/{run.label}"
            values[label].append(float(run.metrics[metric]))
    if not values:
        return
    labels = sorted(values, key=lambda label: order(label.rsplit("/", 1)[-1]))
    means = [statistics.fmean(values[label]) for label in labels]
    errors = [statistics.stdev(values[label]) if len(values[label]) > 1 else 0.0 for label in labels]
    figure, axes = plt.subplots(figsize=(1.2 * len(labels) + 2, 3.5))
    axes.bar(labels, means, yerr=errors, capsize=4, color="#4c72b0")
    axes.set_ylabel(metric.split("/", 1)[1])
    seeds = sorted({len(v) for v in values.values()})
    axes.set_title(f"{task}: {metric.split('/', 1)[1]} (mean ± std over {'/'.join(map(str, seeds))} seed(s))")
    axes.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
