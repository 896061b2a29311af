"""Choosing each method's rates on the val split from a tuning sweep's run dirs (`ptpeft tune`).

A grid names, per method label, the dotted method options it sweeps and their values (one seed,
Hydra multirun). A label may first take options chosen for another label: PT-PEFT's stage 1 is
prefix-tuning with the same prefix, steps and seed (stage 0 keeps the run's seed), so the prefix
grid's winner is its stage 1 and only the stage-2 rate is swept on top of it.

The rule: the highest val headline metric wins; a failed point is never chosen; ties go to the
point listed first (grids list rates in ascending order, so the smaller rate, then the shorter
prefix). A winner on the edge of a swept range (of three or more values) is flagged: the range may
not hold the best value. Hand-written: the grid is a product of a few lists and the choice an
argmax; nothing here needs a library beyond OmegaConf (the yaml) and the run-dir contract.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptpeft_cli.errors import UserError
from ptpeft_cli.rundir import RunRecord
from ptpeft_cli.tables import markdown_table
from ptpeft_cli.tasks import TASKS

TUNING_SPLIT = "val"  # the only split rates are chosen on: the test split stays for `make paper`


@dataclass(frozen=True)
class LabelGrid:
    """One method label's sweep: the conf/method it runs, the options it sweeps (in grid order),
    and the options it takes from an earlier label's choice (that label's key -> this label's key)."""

    label: str
    method: str
    sweep: dict[str, tuple[Any, ...]]
    upstream: str | None = None
    inherit: dict[str, str] = field(default_factory=dict)

    def points(self) -> list[dict[str, Any]]:
        """Every grid point, in grid order (the product of the swept lists, first key slowest)."""
        keys = list(self.sweep)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.sweep.values())]

    def inherited(self, chosen: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The options this label takes from its upstream label's chosen entry."""
        if self.upstream is None:
            return {}
        missing = [key for key in self.inherit if key not in chosen[self.upstream]]
        if missing:
            raise UserError(f"tune: {self.label} takes {', '.join(missing)} from {self.upstream}, whose grid "
                            f"does not sweep {'it' if len(missing) == 1 else 'them'}")
        return {target: chosen[self.upstream][source] for source, target in self.inherit.items()}


@dataclass
class Point:
    """One grid point as measured: its swept options, the val score, the run dir (or why not)."""

    options: dict[str, Any]
    score: float | None = None
    run: Path | None = None
    error: str | None = None


@dataclass
class Choice:
    """A label's tuning result on one task: every point, the winner, and the inherited options."""

    task: str
    label: str
    points: list[Point]
    chosen: Point
    inherited: dict[str, Any]
    at_edge: list[str]

    @property
    def entry(self) -> dict[str, Any]:
        """The rates-table entry: dotted method option -> value."""
        return {**self.inherited, **self.chosen.options}


def parse_grids(grid: Mapping[str, Mapping[str, Sequence[Any]]], methods: Mapping[str, str],
                inherit: Mapping[str, Mapping[str, Any]], labels: Sequence[str] | None = None) -> list[LabelGrid]:
    """The command's `grid` / `methods` / `inherit` options -> label grids in tuning order (the
    grid's; a label after the one it inherits from); `labels`: only these (None: all)."""
    unknown = [label for label in labels or () if label not in grid]
    if unknown:
        raise UserError(f"tune: labels={unknown[0]} has no grid; grid has: {', '.join(grid)}")
    grids = []
    for label, sweep in grid.items():
        if labels is not None and label not in labels:
            continue
        if not sweep:
            raise UserError(f"tune: grid.{label} sweeps nothing; give it e.g. {{lr: [0.001, 0.003]}}")
        values = {str(key): tuple(vals) if isinstance(vals, Sequence) and not isinstance(vals, str) else (vals,)
                  for key, vals in sweep.items()}
        empty = [key for key, vals in values.items() if not vals]
        if empty:
            raise UserError(f"tune: grid.{label}.{empty[0]} is an empty list")
        link = inherit.get(label) or {}
        grids.append(LabelGrid(label=str(label), method=str(methods.get(label, label)), sweep=values,
                               upstream=link.get("from"), inherit=dict(link.get("keys") or {})))
    order = [g.label for g in grids]
    for g in grids:
        if g.upstream is not None and (g.upstream not in order or order.index(g.upstream) > order.index(g.label)):
            raise UserError(f"tune: {g.label} takes {', '.join(g.inherit.values())} from {g.upstream}, which is "
                            f"not tuned before it (add {g.upstream} to labels, before {g.label} in grid)")
    return grids


def format_value(value: Any) -> str:
    """A grid value as a Hydra override value and as a table cell: 0.001 -> 0.001, 3e-05 -> 3e-05."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_overrides(grid: LabelGrid, inherited: Mapping[str, Any]) -> list[str]:
    """The `ptpeft train -m` overrides of a label's sweep: its method, the inherited options fixed,
    every swept option as a comma list (Hydra's basic sweeper takes the product)."""
    return [f"method={grid.method}",
            *(f"method.{key}={format_value(value)}" for key, value in inherited.items()),
            *(f"method.{key}={','.join(format_value(v) for v in values)}" for key, values in grid.sweep.items())]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def collect_points(task: str, grid: LabelGrid, runs: list[RunRecord], inherited: Mapping[str, Any]) -> list[Point]:
    """Each grid point with the score of the run that measured it. A run of another task, label,
    stage 1 or split is a mistake in the sweep dir, not a point."""
    from omegaconf import OmegaConf

    metric = TASKS.get(task).headline_metric
    points = [Point(options=options, error="not run") for options in grid.points()]
    for run in runs:
        split = OmegaConf.select(run.config, "task.eval_split", default=None)
        if run.task != task or run.label != grid.label or split != TUNING_SPLIT:
            raise UserError(f"tune: {run.path} is a {run.task}/{run.label} run on split {split}, not a "
                            f"{task}/{grid.label} run on {TUNING_SPLIT}; delete it or choose another out=")
        options = {key: OmegaConf.select(run.config, f"method.{key}", default=None) for key in grid.sweep}
        fixed = {key: OmegaConf.select(run.config, f"method.{key}", default=None) for key in inherited}
        if not all(_same(fixed[key], value) for key, value in inherited.items()):
            raise UserError(f"tune: {run.path} ran with {fixed}, not the chosen {dict(inherited)}; "
                            f"delete {run.path.parent} to sweep {grid.label} again")
        for point in points:
            if all(_same(options[key], value) for key, value in point.options.items()):
                point.run = run.path
                score = run.metrics.get(metric)
                point.score, point.error = (float(score), None) if score is not None else (None, run.error or f"no {metric}")
    return points


def choose(task: str, grid: LabelGrid, points: list[Point], inherited: Mapping[str, Any]) -> Choice:
    """The highest val score; ties: the first point in grid order. Refused if no point scored."""
    scored = [p for p in points if p.score is not None and math.isfinite(p.score)]
    if not scored:
        reasons = "; ".join(sorted({p.error or "no score" for p in points}))
        raise UserError(f"tune: no point of {task}/{grid.label} has a val score ({reasons})")
    best = max(scored, key=lambda p: p.score)  # max keeps the first of equal scores
    at_edge = [key for key, values in grid.sweep.items() if len(values) >= 3
               and any(_same(best.options[key], v) for v in (values[0], values[-1]))]
    return Choice(task=task, label=grid.label, points=points, chosen=best, inherited=dict(inherited), at_edge=at_edge)


def _point_text(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={format_value(value)}" for key, value in options.items())


def grid_markdown(choices: list[Choice]) -> str:
    """Per task, one row per grid point: its options, the val score, the chosen point marked."""
    sections = []
    for task in dict.fromkeys(c.task for c in choices):
        metric = TASKS.get(task).headline_metric.split("/", 1)[1]
        rows = []
        for choice in (c for c in choices if c.task == task):
            fixed = f" ({_point_text(choice.inherited)})" if choice.inherited else ""
            for point in choice.points:
                mark = "**chosen**" + (f" (edge: {', '.join(choice.at_edge)})" if choice.at_edge else "") \
                    if point is choice.chosen else ""
                score = f"{point.score:.4g}" if point.score is not None else f"failed: {point.error}"
                rows.append([choice.label + fixed, _point_text(point.options), score, mark])
        table = markdown_table(["method (fixed options)", "grid point", f"val {metric}", ""], rows)
        sections.append(f"#### {task}: val {metric} per grid point\n\n{table}\n")
    return "\n".join(sections)


def rates_table(name: str, source: str, choices: list[Choice], fixed: Mapping[str, Mapping[str, Any]],
                copies: Mapping[str, str]) -> dict[str, Any]:
    """The rates table (conf/rates/<name>.yaml's structure): per task, every label's entry; `fixed`
    entries as given (e.g. `none: {}`), `copies` repeat a tuned label's entry under another label
    (the equal-budget rows) when that label was tuned."""
    tasks: dict[str, dict[str, dict[str, Any]]] = {}
    for choice in choices:
        entries = tasks.setdefault(choice.task, {label: dict(entry) for label, entry in fixed.items()})
        entries[choice.label] = choice.entry
    for entries in tasks.values():
        entries.update({label: dict(entries[original]) for label, original in copies.items() if original in entries})
    return {"name": name, "source": source, "tasks": tasks}


def rates_yaml(table: Mapping[str, Any], choices: list[Choice], header: Sequence[str],
               copies: Mapping[str, str]) -> str:
    """The table as yaml, preceded by a comment block holding the whole grid with every point's val
    score (`*` = chosen): human-readable, and not part of the `rates` node every run's config copies."""
    from omegaconf import OmegaConf

    lines = [f"# {line}" if line else "#" for line in header]
    for choice in choices:
        metric = TASKS.get(choice.task).headline_metric.split("/", 1)[1]
        fixed = f"; fixed: {_point_text(choice.inherited)}" if choice.inherited else ""
        edge = f"; on the grid's edge in {', '.join(choice.at_edge)}" if choice.at_edge else ""
        lines.append(f"# {choice.task} / {choice.label} (val {metric}{fixed}{edge}):")
        for point in choice.points:
            score = f"{point.score:.4g}" if point.score is not None else f"failed ({point.error})"
            lines.append(f"#   {'*' if point is choice.chosen else ' '} {_point_text(point.options)}: {score}")
    for label, original in copies.items():
        if any(original in entries for entries in table["tasks"].values()):
            lines.append(f"# {label}: {original}'s chosen entry, as tuned at {original}'s own budget (not tuned again)")
    return "\n".join(lines) + "\n" + OmegaConf.to_yaml(OmegaConf.create(dict(table)))
