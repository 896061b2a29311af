"""`ptpeft tune`: rates chosen on the val split from sweep run dirs (fabricated here; a real smoke
sweep is in tests/e2e/test_tune_e2e.py), written as a rates table that `rates=<name>` then uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ptpeft_cli.cli import COMMAND_CONF_DIR, compose_config, main
from ptpeft_cli.errors import UserError
from ptpeft_cli.reporting import tuning
from ptpeft_cli.rundir import find_runs

GRID = {"lora": {"lr": [0.001, 0.003, 0.01]}, "prefix": {"lr": [0.01, 0.03], "prefix.length": [5, 10]},
        "pt_lora": {"stage2_options.lr": [0.001, 0.003]}}
INHERIT = {"pt_lora": {"from": "prefix", "keys": {"lr": "stage1.lr", "prefix.length": "prefix.length"}}}
METHODS = {"pt_lora": "pt_peft"}
DEFAULTS = compose_config("tune", [], COMMAND_CONF_DIR)
GRID_ARGS = ["grid.lora={lr: [0.001, 0.003, 0.01]}", "grid.prefix={lr: [0.01, 0.03], prefix.length: [5, 10]}",
             "grid.pt_lora={stage2_options.lr: [0.001, 0.003]}"]  # `ptpeft tune` options for GRID


def _grids() -> list[tuning.LabelGrid]:
    return tuning.parse_grids(GRID, METHODS, INHERIT)


def _job(root: Path, name: str, overrides: list[str], score: float | None, split: str = "val") -> Path:
    """A finished (score) or failed (None) sweep job's run dir, its config composed like the real one's."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    cfg = compose_config("train", ["task=vqa", f"task.eval_split={split}", *overrides])
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    if score is None:
        (run / "error.txt").write_text("ptpeft: run stopped: non-finite loss at stage lora, step 3\n")
    else:
        (run / "metrics.json").write_text(json.dumps({"eval/vqa_accuracy": score}))
    return run


def _sweep(root: Path, grid: tuning.LabelGrid, inherited: dict, scores: list[float | None],
           job_overrides: list[str] | None = None) -> Path:
    """A sweep dir as `ptpeft train -m` leaves it: multirun.yaml with its overrides, one dir per job."""
    sweep = root / "vqa" / grid.label
    fixed = [f"method={grid.method}", *(f"method.{k}={tuning.format_value(v)}" for k, v in inherited.items())]
    for number, (point, score) in enumerate(zip(grid.points(), scores, strict=True)):
        swept = [f"method.{k}={tuning.format_value(v)}" for k, v in point.items()]
        _job(sweep, f"{number}_{grid.label}_vqa", fixed + swept, score)
    if job_overrides is not None:
        sweep.mkdir(parents=True, exist_ok=True)
        (sweep / "multirun.yaml").write_text(OmegaConf.to_yaml({"hydra": {"overrides": {
            "task": job_overrides, "hydra": ["hydra/launcher=local", "hydra.launcher.n_jobs=2"]}}}))
    return sweep


def test_grid_points_and_sweep_overrides_follow_the_grid_order() -> None:
    lora, prefix, pt = _grids()
    assert [p["lr"] for p in lora.points()] == [0.001, 0.003, 0.01]
    assert prefix.points() == [{"lr": 0.01, "prefix.length": 5}, {"lr": 0.01, "prefix.length": 10},
                               {"lr": 0.03, "prefix.length": 5}, {"lr": 0.03, "prefix.length": 10}]
    inherited = pt.inherited({"prefix": {"lr": 0.03, "prefix.length": 5}})
    assert inherited == {"stage1.lr": 0.03, "prefix.length": 5}
    assert tuning.sweep_overrides(pt, inherited) == ["method=pt_peft", "method.stage1.lr=0.03", "method.prefix.length=5",
                                                     "method.stage2_options.lr=0.001,0.003"]
    assert tuning.format_value(3e-5) == "3e-05" and tuning.format_value(0.0002) == "0.0002"


def test_the_best_val_score_wins_failed_points_never_and_ties_go_to_the_first(tmp_path: Path) -> None:
    lora = _grids()[0]
    sweep = _sweep(tmp_path, lora, {}, [61.0, 66.5, None])
    points = tuning.collect_points("vqa", lora, find_runs([sweep]), {})
    assert [(p.score, p.error) for p in points] == [
        (61.0, None), (66.5, None), (None, "ptpeft: run stopped: non-finite loss at stage lora, step 3")]
    choice = tuning.choose("vqa", lora, points, {})
    assert choice.entry == {"lr": 0.003} and choice.at_edge == []
    tie = [tuning.Point({"lr": 0.001}, 66.5), tuning.Point({"lr": 0.003}, 66.5), tuning.Point({"lr": 0.01}, 60.0)]
    chosen = tuning.choose("vqa", lora, tie, {})
    assert chosen.entry == {"lr": 0.001} and chosen.at_edge == ["lr"]  # the first of equal scores, flagged on the edge
    with pytest.raises(UserError, match="no point of vqa/lora has a val score"):
        tuning.choose("vqa", lora, [tuning.Point({"lr": 0.001}, error="not run")], {})


def test_a_test_split_run_is_never_a_grid_point(tmp_path: Path) -> None:
    lora = _grids()[0]
    _job(tmp_path / "vqa" / "lora", "0_lora_vqa", ["method=lora", "method.lr=0.001"], 70.0, split="test")
    with pytest.raises(UserError, match="on split test, not a vqa/lora run on val"):
        tuning.collect_points("vqa", lora, find_runs([tmp_path]), {})


def test_tune_command_chooses_from_finished_sweeps_and_writes_the_table(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """Finished sweeps are kept (nothing trains); PT-LoRA's stage 1 is the prefix winner; the table
    has every label, the equal-budget copy, the grid as comments, and `rates=<name>` uses it."""
    lora, prefix, pt = _grids()
    out = tmp_path / "tune"
    common = ["experiment=paper_vqa", "task.eval_split=val", f"output_root={out}", *DEFAULTS.train]
    _sweep(out, lora, {}, [61.0, 66.5, 64.0], [*common, "method=lora", "method.lr=0.001,0.003,0.01"])
    _sweep(out, prefix, {}, [50.0, 52.0, 55.0, 53.0],
           [*common, "method=prefix", "method.lr=0.01,0.03", "method.prefix.length=5,10"])
    inherited = {"stage1.lr": 0.03, "prefix.length": 5}
    _sweep(out, pt, inherited, [64.0, 63.0],
           [*common, "method=pt_peft", "method.stage1.lr=0.03", "method.prefix.length=5",
            "method.stage2_options.lr=0.001,0.003", "hardware.num_threads=1"])
    rates_dir = tmp_path / "conf" / "rates"
    doc = tmp_path / "results.md"
    doc.write_text("prose\n<!-- report:begin tune -->\nold\n<!-- report:end tune -->\nmore prose\n")
    main(["tune", "tasks=[vqa]", "labels=[lora,prefix,pt_lora]", f"out={out}", "name=smoke", f"rates_dir={rates_dir}",
          *GRID_ARGS, f"update_doc={doc}"])
    printed = capsys.readouterr().out
    assert f"kept {out / 'vqa' / 'lora'} (3 jobs ended)" in printed
    text = (rates_dir / "smoke.yaml").read_text()
    table = OmegaConf.create(text)
    assert OmegaConf.to_container(table.tasks) == {"vqa": {
        "none": {}, "lora": {"lr": 0.003}, "prefix": {"lr": 0.03, "prefix.length": 5},
        "pt_lora": {"stage1.lr": 0.03, "prefix.length": 5, "stage2_options.lr": 0.001}, "lora_600": {"lr": 0.003}}}
    assert table.source.startswith("make tune on the val split, ") and ": seed 0, 300 steps per stage; " in table.source
    assert "#   * lr=0.003: 66.5\n" in text and "#     lr=0.01: 64\n" in text  # every point, the chosen one starred
    assert "# vqa / pt_lora (val vqa_accuracy; fixed: stage1.lr=0.03, prefix.length=5):" in text
    assert "# lora_600: lora's chosen entry, as tuned at lora's own budget (not tuned again)" in text
    markdown = doc.read_text()
    assert "old" not in markdown and markdown.startswith("prose\n") and markdown.endswith("more prose\n")
    assert "| lora | lr=0.003 | 66.5 | **chosen** |" in markdown
    assert "| prefix | lr=0.03, prefix.length=5 | 55 | **chosen** |" in markdown
    used = compose_config("train", [f"hydra.searchpath=[file://{rates_dir.parent}]", "rates=smoke", "task=vqa",
                                    "method=pt_peft"])
    assert (used.method.stage1.lr, used.method.prefix.length, used.method.stage2_options.lr) == (0.03, 5, 0.001)
    assert used.method.rates_from.startswith("rates=smoke: vqa/pt_lora (make tune on the val split")


def test_a_sweep_dir_from_another_grid_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "tune"
    _sweep(out, _grids()[0], {}, [61.0, 66.5, 64.0], ["experiment=paper_vqa", "method=lora", "method.lr=0.1,0.3,1"])
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "tasks=[vqa]", "labels=[lora]", f"out={out}", f"rates_dir={tmp_path / 'rates'}", *GRID_ARGS])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"tune: {out / 'vqa' / 'lora'} holds a sweep with other overrides (" in err and "delete it" in err
    assert "method.lr=0.1,0.3,1 instead of " in err and "method.lr=0.001,0.003,0.01" in err
    assert not (tmp_path / "rates" / "tuned.yaml").exists()


@pytest.mark.parametrize("overrides,message", [
    (["labels=[pt_lora]"], "pt_lora takes stage1.lr, prefix.length from prefix, which is not tuned before it"),
    (["labels=[lora,mystery]"], "labels=mystery has no grid; grid has: full, lora, adapter, prefix, pt_lora, pt_adapter"),
    (["grid.lora.lr=[]"], "grid.lora.lr is an empty list"),
    (["parallel=0"], "parallel=0 must be >= 1"),
    (["rates_dir=/tmp/mine"], "tune: rates_dir=/tmp/mine must be a folder named 'rates'"),
])
def test_grid_mistakes_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture, overrides: list[str],
                                           message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", f"out={tmp_path}", f"rates_dir={tmp_path / 'rates'}", *overrides])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not list(tmp_path.iterdir())
