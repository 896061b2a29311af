"""Representation-space analysis: the spectrum of the language model's text-token features,
tuned vs pretrained (PT-PEFT's central measurement)."""

from ptpeft_cli.analysis.compare import analyze_runs, find_run_dirs
from ptpeft_cli.analysis.features import collect_features, default_layers, sample_rows
from ptpeft_cli.analysis.representation import analyze_model
from ptpeft_cli.analysis.spectrum import (
    compare,
    effective_rank,
    rank_at,
    singular_values,
    spectrum_metrics,
)

__all__ = [
    "analyze_model",
    "analyze_runs",
    "collect_features",
    "compare",
    "default_layers",
    "effective_rank",
    "find_run_dirs",
    "rank_at",
    "sample_rows",
    "singular_values",
    "spectrum_metrics",
]
