"""A non-editable install carries everything a run needs: configs, the shipped checkpoint and the
metric modules. Built as a wheel, installed away from the source tree, run from another dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_wheel_installed_elsewhere_trains_from_another_directory(tmp_path: Path) -> None:
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(REPO)], check=True, capture_output=True)
    (wheel,) = wheels.glob("ptpeft-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site), "WANDB_MODE": "offline", "PTPEFT_DATA": str(work / "data")}
    where = subprocess.run([sys.executable, "-c", "import ptpeft_cli.cli as c; print(c.__file__, c.CONF_DIR)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(path.startswith(str(site)) for path in where), where  # not the source checkout

    run = subprocess.run(
        [sys.executable, "-m", "ptpeft_cli", "train", "method=lora", "task=vqa", "trainer.max_steps=2",
         "trainer.batch_size=4", "task.dataset.n_train=8", "task.dataset.n_val=4", "task.dataset.n_test=4",
         "task.dataset.n_pretrain=0", "logger=none", "analysis.enabled=false", "hardware=cpu"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir = work / run.stdout.strip().splitlines()[-1].removeprefix("run dir: ")
    assert run_dir.is_relative_to(work / "outputs" / "train")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["eval/vqa_accuracy"] <= 100 and metrics["params/trainable"] > 0

    # `ptpeft plan` reads the shipped real-size configs and measured rows from the wheel, offline.
    plan = subprocess.run([sys.executable, "-m", "ptpeft_cli", "plan", "model=llava15", "method=lora",
                           "task=vqa", "task.eval_limit=10", "hardware.gpu_name=H200"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "| 16.7 m |" in plan.stdout and "llava-hf/llava-1.5-7b-hf lora (batch 16) on H200" in plan.stdout
