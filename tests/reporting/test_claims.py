"""`ptpeft report`'s claim verdicts (the fixed 2-std rule) and the retention-versus-rank figure,
from fabricated run dirs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ptpeft_cli.cli import compose_config, main
from ptpeft_cli.reporting import claims
from ptpeft_cli.reporting.plots import retention_rank_points, save_retention_rank
from ptpeft_cli.reporting.report import method_order, retention_headlines
from ptpeft_cli.rundir import find_runs

RET = "retention/vqa_pretrain_kinds/vqa_accuracy"


def _run(root: Path, method: str, seed: int, acc: float, ratio: float, retention: float, label: str | None = None) -> None:
    name = f"{label or method}_{seed}"
    (root / name / ".hydra").mkdir(parents=True)
    overrides = ["task=vqa", f"method={method}", f"trainer.seed={seed}", *([f"method.label={label}"] if label else [])]
    (root / name / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(compose_config("train", overrides)))
    (root / name / "metrics.json").write_text(json.dumps({
        "eval/vqa_accuracy": acc, "rep/effective_rank_ratio": ratio, RET: retention,
        "retention/vqa_pretrain_kinds/object_precision": 0.5}))


@pytest.fixture()
def study(tmp_path: Path) -> Path:
    """Three seeds: LoRA beats PT-LoRA clearly, PT-Adapter and Adapter tie, LoRA at 600 steps
    loses to PT-LoRA clearly; the rank falls for LoRA, not for prefix; retention follows the rank."""
    root = tmp_path / "runs"
    for seed, jitter in enumerate((-1.0, 0.0, 1.0)):
        _run(root, "none", seed, 25.0, 1.0, 80.0)
        _run(root, "lora", seed, 68.0 + jitter, 0.90 + 0.01 * jitter, 57.0 + jitter)
        _run(root, "lora", seed, 60.0 + jitter, 0.92 + 0.01 * jitter, 55.0 + jitter, label="lora_600")
        _run(root, "pt_peft", seed, 64.0 + jitter, 1.00 + 0.01 * jitter, 68.0 + jitter)
        _run(root, "adapter", seed, 63.0 + 2 * jitter, 0.92 + 0.01 * jitter, 48.0 + jitter)
        _run(root, "pt_adapter", seed, 64.0 + jitter, 1.07 + 0.01 * jitter, 65.0 + jitter)
        _run(root, "prefix", seed, 53.0 + jitter, 1.03 + 0.01 * jitter, 74.0 + jitter)
    return root


def test_verdicts_follow_the_two_std_rule() -> None:
    assert claims.verdict(2.1, 1.0) == "held" and claims.verdict(1.9, 1.0) == "within noise"
    assert claims.verdict(-2.1, 1.0) == "did not hold" and claims.verdict(-1.9, 1.0, kept=True) == "held"
    assert claims.verdict(5.0, None) == "one seed: no verdict"


def test_claims_table_judges_each_claim_from_the_runs(study: Path) -> None:
    runs = find_runs([study])
    header, rows = claims.claims_table("vqa", runs, retention_headlines(runs))
    table = {(row[0], row[1], row[2]): row[3:] for row in rows}
    assert table[("(a)", "lora vs zero-shot (1)", "eff. rank ratio")] == ["lower", "+0.1", "0.02", "held"]
    assert table[("(a)", "prefix vs zero-shot (1)", "eff. rank ratio")] == ["kept", "+0.03", "0.02", "held"]
    assert table[("(b)", "pt_lora vs lora", "vqa_accuracy")] == ["higher", "-4", "2", "did not hold"]
    assert table[("(b)", "pt_adapter vs adapter", "vqa_accuracy")] == ["higher", "+1", "4", "within noise"]
    assert table[("(b)", "pt_lora vs lora_600", "vqa_accuracy")] == ["higher", "+4", "2", "held"]
    assert table[("(c)", "pt_lora vs lora", "vqa_pretrain_kinds/vqa_accuracy")] == ["higher", "+11", "2", "held"]
    rho = table[("(c)", "rank ratio ~ retention, 18 tuned runs", "vqa_pretrain_kinds/vqa_accuracy")]
    assert rho[0] == "positive" and rho[1].startswith("Spearman +0.") and rho[3] == "descriptive"
    assert not any("object_precision" in row[2] for row in rows)  # headlines only


def test_report_writes_the_claims_and_the_retention_rank_figure(study: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    main(["report", f"runs={study}", f"out={report}"])
    text = (report / "report.md").read_text()
    assert "#### vqa: the paper's claims by the 2-std rule" in text
    assert "| (b) | pt_lora vs lora_600 | vqa_accuracy | higher | +4 | 2 | held |" in text
    methods = [line.split(" | ")[1] for line in text.split("### vqa (")[1].split("\n\n")[1].splitlines()[2:]]
    assert methods == ["none", "lora", "adapter", "prefix", "pt_lora", "pt_adapter", "lora_600"]
    with (report / "retention_rank.csv").open() as handle:
        points = list(csv.DictReader(handle))
    assert len(points) == 21  # every (method, seed) run of the task, one retention headline
    assert {p["retention"] for p in points} == {"vqa_pretrain_kinds/vqa_accuracy"}
    lora0 = next(p for p in points if p["method"] == "lora" and p["seed"] == "0")
    assert (float(lora0["effective_rank_ratio"]), float(lora0["value"])) == (0.89, 56.0)
    assert (report / "retention_rank.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_figure_plots_one_point_per_run_and_panel(study: Path, tmp_path: Path) -> None:
    runs = find_runs([study])
    points = retention_rank_points(runs, retention_headlines)
    points += [{**p, "task": "captioning"} for p in points if p["method"] in ("none", "lora")]  # a second panel
    figure = save_retention_rank(points, tmp_path / "f.png", method_order)
    assert figure is not None and len(figure.axes) == 2
    drawn = {axes.get_title(): sorted((float(x), float(y)) for c in axes.collections for x, y in c.get_offsets())
             for axes in figure.axes}
    assert len(drawn["tuned on vqa"]) == 21 and len(drawn["tuned on captioning"]) == 6
    assert (0.89, 56.0) in drawn["tuned on vqa"]
    legend = [text.get_text() for text in figure.axes[-1].get_legend().get_texts()]
    # every method of any panel, in the table's order (the last panel alone holds only none and lora)
    assert legend == ["none", "lora", "adapter", "prefix", "pt_lora", "pt_adapter", "lora_600"]
    assert save_retention_rank([], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
