"""Run dirs -> the study's tables: per task, one row per method, mean +- std over seeds.

Every number is read from a run dir's metrics.json (the run-dir contract), so a table can always
be traced back to the runs that made it; the runs are listed under each table.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from ptpeft_cli.errors import UserError
from ptpeft_cli.reporting.claims import claims_markdown
from ptpeft_cli.reporting.plots import retention_rank_points, save_bar_chart, save_retention_rank
from ptpeft_cli.rundir import RunRecord, find_runs
from ptpeft_cli.tables import markdown_table, write_csv
from ptpeft_cli.tasks import TASKS

# Rows in the paper's order: the zero-shot model, weight-changing methods, prefix, PT-PEFT, then
# LoRA and Adapter at PT-PEFT's total steps (make paper's equal-budget rows).
METHOD_ORDER = ("none", "full", "lora", "adapter", "prefix", "pt_lora", "pt_adapter", "lora_600", "adapter_600")
REPRESENTATION = [("rep/effective_rank", "eff. rank"), ("rep/effective_rank_base", "base"),
                  ("rep/effective_rank_ratio", "ratio"), ("rep/rank90", "rank90"), ("rep/rank99", "rank99"),
                  ("rep/rank99_base", "rank99 base"),
                  ("rep/last_layer/effective_rank_ratio", "ratio (last layer, pre-norm)")]
SHARED = [("params/trainable", "trainable params"), ("params/trainable_share", "trainable %"),
          ("rep/effective_rank_ratio", "eff. rank / base"), ("time/train_s", "train s")]


def _stat(values: list[float], percent: bool = False) -> str:
    if not values:
        return "-"
    scale = 100.0 if percent else 1.0
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {statistics.stdev(values) * scale:.2g}"


def method_order(label: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(label) if label in METHOD_ORDER else len(METHOD_ORDER), label)


def task_table(task: str, runs: list[RunRecord], columns: list[tuple[str, str]] | None = None
               ) -> tuple[list[str], list[list[str]]]:
    columns = columns or [*TASKS.get(task).report_columns, *SHARED]
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[(run.model, run.label)].append(run)
    header = ["model", "method", "seeds"] + [title for _, title in columns]
    rows = []
    for (model, label), members in sorted(groups.items(), key=lambda kv: (kv[0][0], method_order(kv[0][1]))):
        row = [model, label, str(len(members))]
        for key, _ in columns:
            values = [float(r.metrics[key]) for r in members if key in r.metrics]
            row.append(_stat(values, percent=key == "params/trainable_share"))
        rows.append(row)
    return header, rows


def retention_columns(runs: list[RunRecord]) -> list[tuple[str, str]]:
    """`retention/<probe>/<metric>` columns present in any run: each probe's task headline (any
    registered task's) and grounding, in a stable order."""
    suffixes = [TASKS.get(name).headline_metric.split("/", 1)[1] for name in TASKS.names()] + ["object_precision"]
    present = {key for run in runs for key in run.metrics if key.startswith("retention/")}
    return [(key, key.removeprefix("retention/")) for key in sorted(present) if key.rsplit("/", 1)[1] in suffixes]


def retention_headlines(runs: list[RunRecord]) -> list[str]:
    """The retention keys that are a probe task's headline metric (CIDEr, VQA accuracy)."""
    headlines = {TASKS.get(name).headline_metric.split("/", 1)[1] for name in TASKS.names()}
    return [key for key, _ in retention_columns(runs) if key.rsplit("/", 1)[1] in headlines]


def build_report(roots: list[Path], out_dir: Path) -> str:
    """Write one markdown + CSV per task into `out_dir`; return the combined markdown."""
    runs = find_runs(roots)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    failed = [r for r in runs if r.error]
    for task in sorted({r.task for r in runs if not r.error}):
        finished = [r for r in runs if r.task == task and not r.error]
        if not finished:
            continue
        header, rows = task_table(task, finished)
        table = markdown_table(header, rows)
        write_csv(out_dir / f"{task}.csv", header, rows)
        (out_dir / f"{task}.md").write_text(table + "\n")
        metric = TASKS.get(task).headline_metric.split("/", 1)[1]
        sources = ", ".join(sorted({str(r.path.parent) for r in finished}))
        sections.append(f"### {task} ({metric}; mean ± std over seeds)\n\n{table}\n\nRuns: {sources}\n")
        retention = retention_columns(finished)
        if retention:
            ret_header, ret_rows = task_table(task, finished, [*TASKS.get(task).report_columns[:1], *retention])
            write_csv(out_dir / f"{task}_retention.csv", ret_header, ret_rows)
            sections.append(f"#### {task}: retention (pre-trained abilities after tuning; the `none` row is the "
                            f"zero-shot value)\n\n{markdown_table(ret_header, ret_rows)}\n")
        save_bar_chart(task, finished, TASKS.get(task).headline_metric, out_dir / f"{task}.png", method_order)
        rep_header, rep_rows = task_table(task, finished, REPRESENTATION)
        write_csv(out_dir / f"{task}_representation.csv", rep_header, rep_rows)
        sections.append(f"#### {task}: representation space (final-norm output, centred; ratio = tuned / "
                        f"pre-trained on the same inputs)\n\n{markdown_table(rep_header, rep_rows)}\n")
        claims = claims_markdown(task, finished, retention_headlines(finished))
        if claims:
            sections.append(f"#### {task}: the paper's claims by the 2-std rule (gap > 0 points the claimed way; "
                            f"reporting/claims.py)\n\n{claims}\n")
    points = retention_rank_points([r for r in runs if not r.error], retention_headlines)
    if points:
        write_csv(out_dir / "retention_rank.csv", list(points[0]), [list(p.values()) for p in points])
        save_retention_rank(points, out_dir / "retention_rank.png", method_order)
    if failed:
        sections.append("Failed runs: " + "; ".join(f"{r.path.name}: {r.error}" for r in failed) + "\n")
    report = "\n".join(sections)
    (out_dir / "report.md").write_text(report)
    return report


def markers(block: str | None = None) -> tuple[str, str]:
    """`<!-- report:begin -->` ... `<!-- report:end -->`, or named (`report:begin paper-full`), so one
    document can hold several generated blocks (make paper and make paper-quick)."""
    name = f" {block}" if block else ""
    return f"<!-- report:begin{name} -->", f"<!-- report:end{name} -->"


def update_markdown(path: Path, report: str, block: str | None = None) -> None:
    """Replace a generated block of a hand-written document (docs/results.md), keeping the prose."""
    begin, end = markers(block)
    text = path.read_text() if path.exists() else f"{begin}\n{end}\n"
    if begin not in text or end not in text:
        raise UserError(f"{path} has no {begin} ... {end} block to update")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{report}\n{end}{tail}")
