"""The paper's three claims judged from run dirs by the rule docs/results.md fixed before reading
any number: a gap *holds* when it points the claimed way and exceeds twice the larger of the two
sample standard deviations over seeds, *did not hold* when it exceeds that the other way, and is
*within noise* otherwise. With one seed there is no std, so no verdict.

(a) weight-changing methods lower the effective-rank ratio below the zero-shot 1 (a reference
    without spread); prefix-tuning keeps it (not below 1 by more than 2 std).
(b) PT-PEFT beats its stage-2 method on the headline metric, at the same per-stage budget and at
    the same optimizer steps (the `*_600` rows).
(c) PT-PEFT keeps more of the pre-trained abilities (retention) than its stage-2 method; and, over
    every tuned run, the Spearman correlation of rank ratio and retention (the mechanism: positive
    if a lower rank goes with less retention; descriptive, no verdict).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ptpeft_cli.reporting.plots import RANK_KEY
from ptpeft_cli.rundir import RunRecord
from ptpeft_cli.tables import markdown_table
from ptpeft_cli.tasks import TASKS

RANK_CLAIMS = {"full": "lower", "lora": "lower", "adapter": "lower", "lora_600": "lower", "adapter_600": "lower",
               "prefix": "kept"}
PT_PAIRS = (("pt_lora", "lora"), ("pt_adapter", "adapter"), ("pt_lora", "lora_600"), ("pt_adapter", "adapter_600"))


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float | None  # None: one seed

    @classmethod
    def of(cls, values: list[float]) -> Summary | None:
        if not values:
            return None
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None)


def verdict(gap: float, spread: float | None, kept: bool = False) -> str:
    """`gap` > 0 points the claimed way. `kept`: the claim is no change (only a drop beyond 2 std refutes it)."""
    if spread is None:
        return "one seed: no verdict"
    if gap < -2 * spread:
        return "did not hold"
    if kept or gap > 2 * spread:
        return "held"
    return "within noise"


def _values(runs: list[RunRecord], label: str, key: str) -> list[float]:
    return [float(r.metrics[key]) for r in runs if r.label == label and r.metrics.get(key) is not None]


def _row(claim: str, comparison: str, metric: str, claimed: str, gap: float, spread: float | None,
         kept: bool = False) -> list[str]:
    return [claim, comparison, metric, claimed, f"{gap:+.4g}", "-" if spread is None else f"{2 * spread:.3g}",
            verdict(gap, spread, kept)]


def _pair(claim: str, runs: list[RunRecord], pt: str, other: str, key: str, metric: str) -> list[str] | None:
    a, b = Summary.of(_values(runs, pt, key)), Summary.of(_values(runs, other, key))
    if a is None or b is None:
        return None
    spread = None if a.std is None or b.std is None else max(a.std, b.std)
    return _row(claim, f"{pt} vs {other}", metric, "higher", a.mean - b.mean, spread)


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Rank correlation (pandas' tie-aware ranks; no scipy needed); None for fewer than 3 points
    or a constant side."""
    import pandas as pd

    if len(xs) < 3:
        return None
    rho = pd.DataFrame({"x": xs, "y": ys}).corr(method="spearman").iloc[0, 1]
    return None if pd.isna(rho) else float(rho)


def claims_table(task: str, runs: list[RunRecord], retention: list[str]) -> tuple[list[str], list[list[str]]]:
    """Rows (claim, comparison, metric, claimed direction, gap, 2 x larger std, verdict) for one task;
    `retention`: the `retention/<probe>/<metric>` keys to judge (c) on."""
    rows: list[list[str]] = []
    for label, claimed in RANK_CLAIMS.items():
        ratio = Summary.of(_values(runs, label, RANK_KEY))
        if ratio is not None:
            gap = (1.0 - ratio.mean) if claimed == "lower" else (ratio.mean - 1.0)
            rows.append(_row("(a)", f"{label} vs zero-shot (1)", "eff. rank ratio", claimed, gap, ratio.std,
                             kept=claimed == "kept"))
    headline = TASKS.get(task).headline_metric
    for pt, other in PT_PAIRS:
        row = _pair("(b)", runs, pt, other, headline, headline.split("/", 1)[1])
        rows += [row] if row else []
    for key in retention:
        for pt, other in PT_PAIRS:
            row = _pair("(c)", runs, pt, other, key, key.removeprefix("retention/"))
            rows += [row] if row else []
        tuned = [r for r in runs if r.label != "none" and r.metrics.get(key) is not None
                 and r.metrics.get(RANK_KEY) is not None]
        rho = spearman([float(r.metrics[RANK_KEY]) for r in tuned], [float(r.metrics[key]) for r in tuned])
        if rho is not None:
            rows.append(["(c)", f"rank ratio ~ retention, {len(tuned)} tuned runs", key.removeprefix("retention/"),
                         "positive", f"Spearman {rho:+.2f}", "-", "descriptive"])
    return ["claim", "comparison", "metric", "claimed", "gap", "2 × larger std", "verdict"], rows


def claims_markdown(task: str, runs: list[RunRecord], retention: list[str]) -> str:
    header, rows = claims_table(task, runs, retention)
    return markdown_table(header, rows) if rows else ""
