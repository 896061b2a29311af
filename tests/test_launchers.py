"""Hydra launchers as config options: SLURM (submitit) composes with its documented keys; the local
parallel launcher (joblib) runs a sweep's jobs in separate processes into one sweep dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _ptpeft(args: list[str], cwd: Path, env_data: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PTPEFT_DATA": str(env_data), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "ptpeft_cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_slurm_launcher_composes_with_its_keys(tmp_path: Path) -> None:
    run = _ptpeft(["train", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra"],
                  tmp_path, tmp_path / "data")
    assert run.returncode == 0, run.stderr
    assert "SlurmLauncher" in run.stdout and "partition: gpu" in run.stdout and "gpus_per_node: 1" in run.stdout
    assert not (tmp_path / "outputs").exists()  # --cfg prints, writes nothing


@pytest.mark.slow
def test_local_launcher_runs_two_jobs_in_parallel_processes(tmp_path: Path) -> None:
    run = _ptpeft(["train", "-m", "hydra/launcher=local", "method=none", "trainer.seed=0,1", "task=vqa",
                   "logger=none", "analysis.enabled=false", "retention.enabled=false", "task.dataset.n_train=4",
                   "task.dataset.n_val=2", "task.dataset.n_test=8", "hardware=cpu", "hardware.num_threads=1",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, tmp_path / "data")
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0_none_vqa", "1_none_vqa"]
    assert all((tmp_path / "sweep" / job / "metrics.json").is_file() for job in jobs)
    assert "Joblib.Parallel" in run.stdout + run.stderr
