"""Run-level representation analysis: tuned vs pretrained base, written into the run dir.

Writes `representation.json` (per layer: both spectra, their metrics and the ratios),
`features.safetensors` (the matrices themselves, so any other metric can be computed later
without re-running the model) and `spectrum.png`; returns the flat `rep/*` metrics.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

from ptpeft_cli.analysis.features import FINAL_NORM
from ptpeft_cli.analysis.plots import SpectrumCurve, save_spectrum_figure
from ptpeft_cli.analysis.spectrum import compare, spectrum_metrics

REPRESENTATION_FILE = "representation.json"
FEATURES_FILE = "features.safetensors"
SPECTRUM_PLOT = "spectrum.png"

# The flat per-layer metrics, as (suffix in metrics.json, side, key in spectrum_metrics).
_FLAT_KEYS = (
    ("effective_rank", "tuned", "effective_rank"),
    ("effective_rank_base", "base", "effective_rank"),
    ("effective_rank_ratio", "ratios", "effective_rank_ratio"),
    ("rank90", "tuned", "rank90"),
    ("rank99", "tuned", "rank99"),
    ("rank90_base", "base", "rank90"),
    ("rank99_base", "base", "rank99"),
    ("rank90_ratio", "ratios", "rank90_ratio"),
    ("rank99_ratio", "ratios", "rank99_ratio"),
    ("n_rows", "tuned", "n_rows"),
)


def primary_layer(layer_names: list[str]) -> str:
    """The layer reported without a prefix in metrics.json: `final_norm`, else the first."""
    return FINAL_NORM if FINAL_NORM in layer_names else layer_names[0]


def _json_safe(value: Any) -> Any:
    """NaN/inf -> null, so representation.json stays strict JSON (a ratio against a zero base
    is NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _check_pairs(tuned: dict[str, Tensor], base: dict[str, Tensor]) -> None:
    if not tuned:
        raise ValueError("no features to analyse")
    if set(tuned) != set(base):
        raise ValueError(f"tuned layers {sorted(tuned)} differ from base layers {sorted(base)}")
    for name in tuned:
        if tuned[name].shape != base[name].shape:
            raise ValueError(
                f"layer {name!r}: tuned {tuple(tuned[name].shape)} and base "
                f"{tuple(base[name].shape)} were not collected on the same inputs"
            )


def analyze_model(
    tuned_features: dict[str, Tensor],
    base_features: dict[str, Tensor],
    center: bool,
    out_dir: Path,
    title: str,
) -> dict[str, float]:
    """Measure every layer's spectrum for the tuned model and its base, write the analysis
    files into `out_dir`, and return `rep/<metric>` (primary layer) and
    `rep/<layer>/<metric>` (other layers) for metrics.json."""
    _check_pairs(tuned_features, base_features)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(tuned_features)
    primary = primary_layer(names)
    layers: dict[str, dict] = {}
    for name in names:
        tuned = spectrum_metrics(tuned_features[name], center)
        base = spectrum_metrics(base_features[name], center)
        layers[name] = {"tuned": tuned, "base": base, "ratios": compare(tuned, base)}

    document = {"title": title, "center": center, "primary_layer": primary, "layers": layers}
    (out_dir / REPRESENTATION_FILE).write_text(json.dumps(_json_safe(document), indent=1))
    tensors = {
        f"{side}/{name}": features[name].detach().cpu().contiguous()
        for side, features in (("tuned", tuned_features), ("base", base_features))
        for name in names
    }
    save_file(
        tensors, str(out_dir / FEATURES_FILE), metadata={"title": title, "center": str(center)}
    )
    save_spectrum_figure(
        {
            name: [
                SpectrumCurve("tuned", layer["tuned"]["singular_values"]),
                SpectrumCurve("pretrained base", layer["base"]["singular_values"], dashed=True),
            ]
            for name, layer in layers.items()
        },
        out_dir / SPECTRUM_PLOT,
        title,
    )

    metrics: dict[str, float] = {}
    for name, layer in layers.items():
        prefix = "rep" if name == primary else f"rep/{name}"
        for suffix, side, key in _FLAT_KEYS:
            metrics[f"{prefix}/{suffix}"] = layer[side][key]
    return metrics
