"""`ptpeft train -m` over all five methods through the CLI: separate run dirs, a summary table,
every method beats the untrained start, PT-PEFT stage 1 is cached, `analyze` compares the runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import SHORT_RUN, SMALL_WORLD, run_cli
from .test_train_e2e import zero_shot_metrics

pytestmark = pytest.mark.slow
METHODS = ["full", "lora", "adapter", "prefix", "pt_peft"]


@pytest.fixture(scope="module")
def sweep(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    monkeypatch = pytest.MonkeyPatch()
    capsys_out = tmp_path_factory.mktemp("sweep")
    sweep_dir = capsys_out / "sweep"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        monkeypatch.chdir(workdir)
        monkeypatch.setenv("PTPEFT_DATA", str(workdir / "data"))
        from ptpeft_cli.cli import main

        main(["train", "-m", f"method={','.join(METHODS)}", "task=captioning", "trainer.max_steps=40",
              "logger=none", f"hydra.sweep.dir={sweep_dir}", *SMALL_WORLD, *SHORT_RUN])
    monkeypatch.undo()
    return sweep_dir, out.getvalue()


def test_sweep_writes_one_readable_run_dir_per_job_and_a_summary(sweep: tuple[Path, str]) -> None:
    sweep_dir, stdout = sweep
    names = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    labels = ["pt_lora" if m == "pt_peft" else m for m in METHODS]  # one name per method: its label
    assert names == [f"{i}_{label}_captioning" for i, label in enumerate(labels)]
    summary = (sweep_dir / "summary.md").read_text()
    for method in ["full", "lora", "adapter", "prefix", "pt_lora"]:
        assert f"| {method} |" in summary
    assert "failed" not in summary
    assert "sweep dir:" in stdout and "| job | method |" in stdout


def test_every_method_beats_the_untrained_start(sweep: tuple[Path, str]) -> None:
    sweep_dir, _ = sweep
    run_dirs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    baseline = zero_shot_metrics(run_dirs[0])["eval/CIDEr"]
    for run_dir in run_dirs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["eval/CIDEr"] > baseline, run_dir.name
        assert metrics["params/trainable"] > 0


def test_prefix_trains_fewest_parameters(sweep: tuple[Path, str]) -> None:
    sweep_dir, _ = sweep
    trainable = {p.name.split("_", 1)[1]: json.loads((p / "metrics.json").read_text())["params/trainable"]
                 for p in sweep_dir.iterdir() if p.is_dir()}
    assert min(trainable, key=trainable.get) == "prefix_captioning"


def test_analyze_over_the_sweep(sweep: tuple[Path, str], workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture) -> None:
    sweep_dir, _ = sweep
    run_cli(["analyze", f"sweep_dir={sweep_dir}"], workdir, monkeypatch, capsys)
    table = (sweep_dir / "representation_table.md").read_text()
    assert table.count("captioning") >= len(METHODS)
    assert (sweep_dir / "spectra.png").stat().st_size > 0
    assert (sweep_dir / "representation_table.csv").is_file()
