"""End-to-end runs of the real CLI on the shipped tiny LMM and a small synthetic world."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ptpeft_cli.cli import main

# A small world (same generator, fewer images) and short runs keep each job to seconds on 2 cores.
SMALL_WORLD = ["task.dataset.n_pretrain=16", "task.dataset.n_train=48", "task.dataset.n_val=8",
               "task.dataset.n_test=24"]
SHORT_RUN = ["trainer.batch_size=16", "trainer.eval_batch_size=24", "trainer.log_every=5",
             "analysis.max_rows=512", "task.meteor=false", "hardware=cpu"]


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


def run_cli(args: list[str], workdir: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture) -> tuple[str, str]:
    """Run `ptpeft ...` in-process inside `workdir`; return (stdout, stderr)."""
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("PTPEFT_DATA", str(workdir / "data"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    main(args)
    captured = capsys.readouterr()
    return captured.out, captured.err


def run_dir_of(stdout: str) -> Path:
    lines = [line for line in stdout.strip().splitlines() if line.startswith("run dir: ")]
    assert lines, f"no 'run dir:' line in output:\n{stdout[-2000:]}"
    assert stdout.strip().splitlines()[-1].startswith("run dir: "), "run dir must be the last line"
    return Path(re.sub(r"^run dir: ", "", lines[-1]))
