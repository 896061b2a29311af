"""The representation analysis as a run uses it: hook the family's modules, collect, measure.

The base model's features are collected before the method touches the model, on the very
batches the tuned model sees afterwards, so the two matrices differ only by the method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ptpeft_cli.analysis.features import collect_features, default_layers
from ptpeft_cli.analysis.representation import analyze_model
from ptpeft_cli.models.base import LoadedModel


def collect_run_features(loaded: LoadedModel, batches: list[dict], analysis_cfg: Any) -> dict[str, Tensor]:
    model = loaded.model
    layers = default_layers(loaded.family, model, list(analysis_cfg.layers))
    projector = loaded.family.projector(model) if analysis_cfg.include_projector else None
    was_training = model.training
    try:
        return collect_features(model, layers, batches,
                                text_mask_fn=lambda batch: loaded.family.text_token_mask(loaded, batch),
                                max_rows=int(analysis_cfg.max_rows), seed=int(analysis_cfg.seed),
                                projector=projector)
    finally:
        model.train(was_training)


def analyze_run(tuned: dict[str, Tensor], base: dict[str, Tensor], analysis_cfg: Any, run_dir: Path,
                title: str) -> dict[str, float]:
    return analyze_model(tuned, base, center=bool(analysis_cfg.center), out_dir=run_dir, title=title)
