"""The study's figures: per task, the headline metric per method (mean with the seeds' std as
error bars, in the table's row order); over all runs, retention against the effective-rank ratio
(matplotlib, headless)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptpeft_cli.rundir import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


RANK_KEY = "rep/effective_rank_ratio"


def retention_rank_points(runs: list[RunRecord], probe_metrics: Callable[[list[RunRecord]], list[str]]
                          ) -> list[dict[str, Any]]:
    """One point per run that has both numbers, per retention metric: (task tuned on, retention
    metric, method label, seed, effective-rank ratio, retention value, run dir)."""
    points = []
    for task in sorted({r.task for r in runs}):
        members = [r for r in runs if r.task == task]
        for key in probe_metrics(members):
            for run in members:
                x, y = run.metrics.get(RANK_KEY), run.metrics.get(key)
                if x is not None and y is not None:
                    points.append({"task": task, "retention": key.removeprefix("retention/"), "method": run.label,
                                   "seed": run.seed, "effective_rank_ratio": float(x), "value": float(y),
                                   "run": str(run.path)})
    return points


def save_retention_rank(points: list[dict[str, Any]], path: Path, order: Callable[[str], Any] = str) -> Figure | None:
    """Claim (c)'s mechanism at a glance: a panel per (task tuned on, retention metric), every run
    a point (x: effective-rank ratio, y: retention), a marker per method; dashed: the zero-shot
    (`none`) value and ratio 1. Returns the figure (its plotted data can be read back)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(dict.fromkeys((p["task"], p["retention"]) for p in points))
    if not panels:
        return None
    methods = sorted({p["method"] for p in points}, key=order)
    markers, colours = "osD^v<>PX*", [f"C{i}" for i in range(10)]
    figure = Figure(figsize=(4.2 * len(panels), 3.8))
    FigureCanvasAgg(figure)
    for index, (task, retention) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        here = [p for p in points if (p["task"], p["retention"]) == (task, retention)]
        for number, method in enumerate(methods):
            mine = [p for p in here if p["method"] == method]
            if mine:
                axes.scatter([p["effective_rank_ratio"] for p in mine], [p["value"] for p in mine],
                             marker=markers[number % len(markers)], color=colours[number % len(colours)],
                             label=method, alpha=0.8)
        zero_shot = [p["value"] for p in here if p["method"] == "none"]
        if zero_shot:
            axes.axhline(statistics.fmean(zero_shot), color="grey", linestyle="--", linewidth=0.8)
        axes.axvline(1.0, color="grey", linestyle=":", linewidth=0.8)
        axes.set_xlabel("effective-rank ratio (tuned / pre-trained)")
        axes.set_ylabel(f"retention: {retention}")
        axes.set_title(f"tuned on {task}", fontsize=10)
    handles = {label: handle for axes in figure.axes
               for handle, label in zip(*axes.get_legend_handles_labels(), strict=True)}
    shown = [method for method in methods if method in handles]  # every method once, though no panel holds all
    figure.axes[-1].legend([handles[method] for method in shown], shown, fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return figure
