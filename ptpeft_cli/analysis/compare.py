"""`ptpeft analyze`: compare the representation spectra of several runs.

Reads only run-dir files (`representation.json`, `.hydra/config.yaml`), so any finished run,
from any machine, can be compared without loading a model.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from ptpeft_cli import rundir, tables
from ptpeft_cli.analysis.plots import SpectrumCurve, save_spectrum_figure
from ptpeft_cli.analysis.representation import REPRESENTATION_FILE
from ptpeft_cli.errors import UserError

OVERLAY_PLOT = "spectra.png"
TABLE_STEM = "representation_table"
# (column key, markdown header, number format); the CSV keeps full precision.
COLUMNS = (
    ("method", "method", "{}"),
    ("model", "model", "{}"),
    ("task", "task", "{}"),
    ("seed", "seed", "{}"),
    ("effective_rank", "effective rank", "{:.2f}"),
    ("effective_rank_base", "base", "{:.2f}"),
    ("effective_rank_ratio", "ratio", "{:.3f}"),
    ("rank90", "rank90", "{}"),
    ("rank99", "rank99", "{}"),
    ("rank90_base", "rank90 base", "{}"),
    ("rank99_base", "rank99 base", "{}"),
    ("layer", "layer", "{}"),
    ("run", "run", "{}"),
)


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Analysed run dirs among `paths`: each is a run dir itself or a sweep dir holding run dirs."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise UserError(f"{path} is not a directory (expected a run dir or a sweep dir)")
        try:
            candidates = rundir.find_run_dirs([path])
        except UserError:
            candidates = []
        runs = [run for run in candidates if (run / REPRESENTATION_FILE).is_file()]
        if not runs:
            raise UserError(
                f"{path} holds no {REPRESENTATION_FILE} (neither it nor any subdirectory is an "
                "analysed run dir; train with analysis.enabled=true)"
            )
        found.extend(run for run in runs if run not in found)
    return found


def read_run(run_dir: Path, label: str) -> tuple[dict, dict]:
    """(table row, primary layer's entry of representation.json) for one run."""
    try:
        document = json.loads((run_dir / REPRESENTATION_FILE).read_text())
        layer_name = document["primary_layer"]
        layer = document["layers"][layer_name]
    except (json.JSONDecodeError, KeyError) as error:
        raise UserError(f"{run_dir / REPRESENTATION_FILE} is malformed ({error!r})") from error
    run = rundir.RunRecord(path=run_dir, config=rundir.read_config(run_dir))
    row = {
        "method": run.label,
        "model": run.model,
        "task": run.task,
        "seed": run.seed,
        "effective_rank": layer["tuned"]["effective_rank"],
        "effective_rank_base": layer["base"]["effective_rank"],
        "effective_rank_ratio": layer["ratios"]["effective_rank_ratio"],
        "rank90": layer["tuned"]["rank90"],
        "rank99": layer["tuned"]["rank99"],
        "rank90_base": layer["base"]["rank90"],
        "rank99_base": layer["base"]["rank99"],
        "layer": layer_name,
        "run": label,
    }
    return row, layer


def _labels(run_dirs: list[Path]) -> list[str]:
    """Run names relative to what all runs share (sweep members are named `0`, `1`, ...)."""
    if len(run_dirs) == 1:
        return [run_dirs[0].name]
    common = os.path.commonpath([str(run.resolve()) for run in run_dirs])
    return [os.path.relpath(run.resolve(), common) for run in run_dirs]


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    return fmt.format(value) if isinstance(value, (int, float)) else str(value)


def markdown_table(rows: list[dict]) -> str:
    """The comparison rows as a GitHub markdown table, formatted per COLUMNS."""
    return tables.markdown_table([header for _, header, _ in COLUMNS],
                                 [[_cell(row[key], fmt) for key, _, fmt in COLUMNS] for row in rows])


def _sort_key(row: dict) -> tuple:
    return tuple(str(row[key]) for key in ("model", "task", "method")) + (
        row["seed"] if isinstance(row["seed"], int) else -1,
        row["run"],
    )


def overlay_curves(runs: list[tuple[dict, dict]]) -> list[SpectrumCurve]:
    """One solid curve per run, then one dashed curve per distinct pretrained base (runs on the
    same model and inputs share it)."""
    several_models = len({row["model"] for row, _ in runs}) > 1
    curves = [
        SpectrumCurve(
            (f"{row['model']} / " if several_models else "")
            + f"{row['method']} / {row['task']} / seed {row['seed']}",
            layer["tuned"]["singular_values"],
        )
        for row, layer in runs
    ]
    # Bases match across runs on the same inputs; rounding absorbs nondeterministic kernels.
    seen_bases: set[tuple[float, ...]] = set()
    for row, layer in runs:
        base = layer["base"]["singular_values"]
        key = tuple(round(value / (base[0] or 1.0), 6) for value in base)
        if key not in seen_bases:
            seen_bases.add(key)
            curves.append(
                SpectrumCurve(f"base ({row['model']} / {row['task']})", base, dashed=True)
            )
    return curves


def analyze_runs(run_dirs: list[Path], out_dir: Path) -> list[dict]:
    """Table + overlay plot of the primary-layer spectra of all runs found under `run_dirs`;
    writes `spectra.png`, `representation_table.md` and `.csv` into `out_dir`, prints the
    markdown table and returns the rows."""
    runs = find_run_dirs(run_dirs)
    read = [read_run(run, label) for run, label in zip(runs, _labels(runs), strict=True)]
    read.sort(key=lambda pair: _sort_key(pair[0]))
    rows = [row for row, _ in read]

    curves = overlay_curves(read)
    out_dir = Path(out_dir)
    layers = sorted({row["layer"] for row in rows})
    save_spectrum_figure(
        {"/".join(layers): curves},
        out_dir / OVERLAY_PLOT,
        f"Representation spectra of {len(rows)} runs: tuned (solid) vs pretrained (dashed)",
    )

    table = markdown_table(rows)
    (out_dir / f"{TABLE_STEM}.md").write_text(table + "\n")
    with (out_dir / f"{TABLE_STEM}.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[key for key, _, _ in COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    print(table)
    return rows
