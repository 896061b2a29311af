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


def test_a_multi_gpu_slurm_job_starts_one_task_per_gpu() -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ptpeft_cli.cli import CONF_DIR
    from ptpeft_cli.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["gpus_per_node"] == 4 and launcher["tasks_per_node"] == 4


def test_each_slurm_task_becomes_a_torch_rank(tmp_path: Path) -> None:
    """What a task of such a job does first: SLURM's variables -> torch's env:// variables."""
    import os

    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
             "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu01", "SLURM_NNODES": "1", "SLURM_NODEID": "0"}
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    code = ("import os; from ptpeft_cli.launch import export_slurm_environment, launched_rank, "
            "launched_world_size; export_slurm_environment(); "
            "print(launched_rank(), launched_world_size(), os.environ['LOCAL_RANK'], os.environ['MASTER_ADDR'])")
    run = subprocess.run([sys.executable, "-c", code], env={**env, **slurm}, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1", "2", "1", "gpu01"]


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
