"""`ptpeft train -m resume=SWEEP_DIR`: a sweep that died part-way is taken up where it stopped: the
finished job is kept untouched, the job that died mid-stage resumes from its checkpoint, the job
that never started trains; the numbers equal those of the sweep left alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from run_metrics import comparable_metrics

pytestmark = pytest.mark.slow
SWEEP = ["train", "-m", "method=none,lora,prefix", "task=vqa", "trainer.max_steps=6", "trainer.checkpoint_every=2",
         "trainer.batch_size=8", "task.dataset.n_train=24", "task.dataset.n_val=4", "task.dataset.n_test=8",
         "logger=none", "analysis.enabled=false", "retention.enabled=false", "hardware=cpu", "hardware.num_threads=1"]


def _ptpeft(args: list[str], workdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PTPEFT_DATA": str(workdir / "data"), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "ptpeft_cli", *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=900)



def test_a_broken_off_sweep_resumes_to_the_same_numbers(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    done = _ptpeft([*SWEEP, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    finished, stopped, unstarted = (sweep / name for name in ("0_none_vqa", "1_lora_vqa", "2_prefix_vqa"))
    expected = {job.name: comparable_metrics(job) for job in (finished, stopped, unstarted)}
    kept_mtime = (finished / "metrics.json").stat().st_mtime_ns
    # As the sweep looks when killed in job 1 after its step-4 checkpoint: job 2 never started.
    for name in ("metrics.json", "predictions.json", "weights"):
        shutil.rmtree(stopped / name) if (stopped / name).is_dir() else (stopped / name).unlink()
    shutil.rmtree(stopped / "checkpoints" / "0-end")
    shutil.rmtree(unstarted)

    resumed = _ptpeft(["train", "-m", f"resume={sweep}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"kept finished job: {finished}" in resumed.stdout
    assert "from 0-0000004" in resumed.stdout
    assert (finished / "metrics.json").stat().st_mtime_ns == kept_mtime
    assert {job.name: comparable_metrics(job) for job in (finished, stopped, unstarted)} == expected
    losses = [json.loads(line)["step"] for line in (stopped / "history.jsonl").read_text().splitlines()
              if "train/loss" in line]
    assert losses == sorted(set(losses))  # each step logged once

