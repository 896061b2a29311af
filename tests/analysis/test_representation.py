"""analyze_model: the run-dir files and the flat metrics, on features with known structure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ptpeft_cli.analysis.representation import analyze_model
from ptpeft_cli.analysis.spectrum import spectrum_metrics


def run_analysis(features, out_dir: Path, collapsed_rank: int = 3) -> dict[str, float]:
    tuned = {"final_norm": features(1, rank=collapsed_rank), "last_layer": features(2)}
    base = {"final_norm": features(3), "last_layer": features(4)}
    return analyze_model(tuned, base, center=True, out_dir=out_dir, title="tiny_llava / lora / vqa")


def test_metrics_and_files(features, tmp_path: Path) -> None:
    metrics = run_analysis(features, tmp_path)
    tuned = spectrum_metrics(features(1, rank=3), center=True)
    base = spectrum_metrics(features(3), center=True)
    assert metrics["rep/effective_rank"] == pytest.approx(tuned["effective_rank"])
    assert metrics["rep/effective_rank_base"] == pytest.approx(base["effective_rank"])
    assert metrics["rep/effective_rank_ratio"] == pytest.approx(
        tuned["effective_rank"] / base["effective_rank"]
    )
    # A rank-3 tuned space against a full-rank base: collapse shows in every measure.
    assert metrics["rep/effective_rank"] < 3.0 + 1e-6 < metrics["rep/effective_rank_base"]
    assert metrics["rep/rank99"] <= 3 < metrics["rep/rank99_base"]
    for key in ("rank90", "rank99", "rank90_base", "rank99_base", "n_rows"):
        assert isinstance(metrics[f"rep/{key}"], int)
    assert metrics["rep/n_rows"] == 300
    assert {key for key in metrics if key.startswith("rep/last_layer/")} == {
        f"rep/last_layer/{suffix}"
        for suffix in (
            "effective_rank", "effective_rank_base", "effective_rank_ratio", "rank90", "rank99",
            "rank90_base", "rank99_base", "rank90_ratio", "rank99_ratio", "n_rows",
        )
    }  # fmt: skip

    document = json.loads((tmp_path / "representation.json").read_text())
    assert document["primary_layer"] == "final_norm" and document["center"] is True
    final = document["layers"]["final_norm"]
    assert final["tuned"]["singular_values"] == pytest.approx(tuned["singular_values"])
    assert final["ratios"]["effective_rank_ratio"] == pytest.approx(
        metrics["rep/effective_rank_ratio"]
    )

    stored = load_file(str(tmp_path / "features.safetensors"))
    assert set(stored) == {
        "tuned/final_norm",
        "tuned/last_layer",
        "base/final_norm",
        "base/last_layer",
    }
    assert torch.equal(stored["base/last_layer"], features(4))

    with Image.open(tmp_path / "spectrum.png") as image:
        assert image.format == "PNG" and image.width > 500 and image.height > 300


def test_mismatched_inputs_are_rejected(features, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same inputs"):
        analyze_model(
            {"final_norm": features(1)}, {"final_norm": features(2, rows=10)}, True, tmp_path, "t"
        )
    with pytest.raises(ValueError, match="differ"):
        analyze_model({"final_norm": features(1)}, {"other": features(1)}, True, tmp_path, "t")


def test_zero_base_writes_strict_json(features, tmp_path: Path) -> None:
    metrics = analyze_model(
        {"final_norm": features(1)}, {"final_norm": torch.zeros(300, 24)}, True, tmp_path, "t"
    )
    assert metrics["rep/effective_rank_base"] == 0.0
    text = (tmp_path / "representation.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["layers"]["final_norm"]["ratios"]["effective_rank_ratio"] is None
