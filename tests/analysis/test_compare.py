"""analyze_runs over run dirs written by analyze_model (the `ptpeft analyze` backend)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from ptpeft_cli.analysis.compare import analyze_runs, overlay_curves, read_run
from ptpeft_cli.analysis.representation import analyze_model
from ptpeft_cli.errors import UserError


def make_run(features, run_dir: Path, method: str, seed: int, collapsed_rank: int | None) -> dict:
    """A run dir as `ptpeft train` leaves it: resolved config + analysis files."""
    config = {
        "model": {"family": "tiny_llava"},
        "method": {"name": method, "stage2": "adapter", "label": "pt_adapter" if method == "pt_peft" else method},
        "task": {"name": "vqa"},
        "trainer": {"seed": seed},
    }
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    return analyze_model(
        {"final_norm": features(10 + seed, rank=collapsed_rank)},
        {"final_norm": features(99)},
        center=True,
        out_dir=run_dir,
        title=f"tiny_llava / {method} / vqa",
    )


@pytest.fixture()
def sweep(features, tmp_path: Path) -> Path:
    make_run(features, tmp_path / "sweep" / "1", "pt_peft", seed=1, collapsed_rank=None)
    make_run(features, tmp_path / "sweep" / "0", "lora", seed=0, collapsed_rank=4)
    return tmp_path / "sweep"


def test_sweep_dir_gives_one_row_per_run(sweep: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "analysis"
    rows = analyze_runs([sweep], out)
    assert [(row["method"], row["seed"], row["run"]) for row in rows] == [
        ("lora", 0, "0"),
        ("pt_adapter", 1, "1"),
    ]
    for row, run in zip(rows, ("0", "1"), strict=True):
        layer = json.loads((sweep / run / "representation.json").read_text())["layers"][
            "final_norm"
        ]
        assert row["effective_rank"] == layer["tuned"]["effective_rank"]
        assert row["effective_rank_base"] == layer["base"]["effective_rank"]
        assert row["rank90"] == layer["tuned"]["rank90"] and row["task"] == "vqa"
    assert rows[0]["effective_rank_ratio"] < 0.5 < rows[1]["effective_rank_ratio"]

    printed = capsys.readouterr().out
    table = (out / "representation_table.md").read_text()
    assert printed.strip() == table.strip()
    assert table.splitlines()[0].startswith("| method | model | task | seed | effective rank |")
    assert len(table.splitlines()) == 4
    with (out / "representation_table.csv").open() as handle:
        stored = list(csv.DictReader(handle))
    assert [row["method"] for row in stored] == ["lora", "pt_adapter"]
    assert float(stored[0]["effective_rank"]) == pytest.approx(rows[0]["effective_rank"])
    with Image.open(out / "spectra.png") as image:
        assert image.format == "PNG"


def test_run_dirs_given_one_by_one_match_the_sweep(sweep: Path, tmp_path: Path) -> None:
    by_sweep = analyze_runs([sweep], tmp_path / "a")
    by_run = analyze_runs([sweep / "0", sweep / "1", sweep / "0"], tmp_path / "b")
    assert by_run == by_sweep


def test_shared_base_is_drawn_once(sweep: Path, tmp_path: Path) -> None:
    read = [read_run(sweep / run, run) for run in ("0", "1")]
    curves = overlay_curves(read)
    assert [curve.dashed for curve in curves] == [False, False, True]


def test_dir_without_representation_names_it(sweep: Path, tmp_path: Path) -> None:
    empty = tmp_path / "not_a_run"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(UserError, match="not_a_run"):
        analyze_runs([sweep, empty], tmp_path / "out")
    with pytest.raises(UserError, match="missing"):
        analyze_runs([tmp_path / "missing"], tmp_path / "out")
