"""`ptpeft tune` end to end at smoke size: real sweeps (tiny world, 2 steps, two jobs at a time)
on the val split, a rates table written, then used by `ptpeft train rates=<name>`."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ptpeft_cli import rundir

from .conftest import SHORT_RUN, SMALL_WORLD, run_cli, run_dir_of

GRID = ["labels=[lora,prefix,pt_lora]", "grid.lora.lr=[0.001,0.03]", "grid.prefix={lr: [0.01, 0.1], prefix.length: [4]}",
        "grid.pt_lora={stage2_options.lr: [0.002, 0.02]}"]


@pytest.mark.slow
def test_smoke_tune_writes_a_table_that_train_uses(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    out, rates_dir = workdir / "tune", workdir / "tune_conf" / "rates"
    extra = "extra=[" + ",".join(f"'{o}'" for o in [*SMALL_WORLD, *SHORT_RUN, "trainer.max_steps=2"]) + "]"
    args = ["tune", "tasks=[vqa]", *GRID, f"out={out}", "name=smoke", f"rates_dir={rates_dir}", extra]
    printed, _ = run_cli(args, workdir, monkeypatch, capsys)
    table = OmegaConf.load(rates_dir / "smoke.yaml")
    entries = OmegaConf.to_container(table.tasks.vqa)
    assert set(entries) == {"none", "lora", "prefix", "pt_lora", "lora_600"}
    assert ": seed 0, 2 steps per stage; sweeps in " in table.source  # the budget the sweeps really ran
    assert entries["lora_600"] == entries["lora"] and entries["lora"]["lr"] in (0.001, 0.03)
    assert entries["pt_lora"]["stage1.lr"] == entries["prefix"]["lr"] and entries["pt_lora"]["prefix.length"] == 4
    runs = rundir.find_runs([out])
    assert len(runs) == 6 and not [r.error for r in runs if r.error]
    for run in runs:  # every point on val, seed 0, the smoke budget, nothing but the headline work
        cfg = run.config
        assert (cfg.task.eval_split, cfg.trainer.seed, cfg.trainer.max_steps, cfg.hardware.num_threads) == ("val", 0, 2, 1)
        assert not cfg.retention.enabled and not cfg.analysis.enabled and cfg.method.rates_from is None
        assert "eval/vqa_accuracy" in run.metrics and not any(k.startswith(("rep/", "retention/")) for k in run.metrics)
    # PT-LoRA's stage 1 is the prefix run at the chosen point: the same training, the same final loss.
    prefix_run = next(r for r in runs if r.label == "prefix" and r.config.method.lr == entries["prefix"]["lr"])
    stage1 = [r.metrics["train/final_loss/prefix"] for r in runs if r.label == "pt_lora"
              and "train/final_loss/prefix" in r.metrics]
    assert stage1 and set(stage1) == {prefix_run.metrics["train/final_loss/prefix"]}

    # Rerun: every sweep kept, the same table; a job without metrics is resumed, the others kept.
    (next(r for r in runs if r.label == "lora").path / rundir.METRICS_FILE).unlink()
    printed, _ = run_cli(args, workdir, monkeypatch, capsys)
    assert f"resume={out / 'vqa' / 'lora'}" in printed and f"kept {out / 'vqa' / 'prefix'} (2 jobs ended)" in printed
    assert OmegaConf.to_container(OmegaConf.load(rates_dir / "smoke.yaml").tasks.vqa) == entries

    printed, _ = run_cli(["train", f"hydra.searchpath=[file://{rates_dir.parent}]", "rates=smoke", "method=pt_peft",
                          "task=vqa", "trainer.max_steps=2", "logger=none", "analysis.enabled=false",
                          "retention.enabled=false", *SMALL_WORLD, *SHORT_RUN], workdir, monkeypatch, capsys)
    saved = rundir.read_config(workdir / run_dir_of(printed))
    assert (saved.method.stage1.lr, saved.method.prefix.length, saved.method.stage2_options.lr) == (
        entries["pt_lora"]["stage1.lr"], 4, entries["pt_lora"]["stage2_options.lr"])
    assert saved.method.rates_from.startswith("rates=smoke: vqa/pt_lora (make tune on the val split")
