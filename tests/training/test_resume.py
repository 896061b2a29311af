"""Checkpoint and exact resume: a run killed (SIGKILL) in either PT-PEFT stage and resumed ends
with the same metrics and predictions as the same run left alone; bad checkpoints and changed
configs are refused with one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_metrics import comparable_metrics

pytestmark = pytest.mark.slow
RUN = ["train", "method=pt_peft", "task=vqa", "trainer.max_steps=30", "trainer.checkpoint_every=5",
       "trainer.batch_size=8", "trainer.log_every=5", "task.dataset.n_train=48", "task.dataset.n_val=4",
       "task.dataset.n_test=16", "logger=none", "analysis.enabled=false", "retention.enabled=false",
       "task.meteor=false", "hardware=cpu", "hardware.num_threads=1"]


def _env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "PTPEFT_DATA": str(workdir / "data"), "WANDB_MODE": "offline"}


def _ptpeft(args: list[str], workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptpeft_cli", *args], cwd=workdir, env=_env(workdir),
                          capture_output=True, text=True, timeout=900)



def _killed_run(workdir: Path, name: str, kill_after: str) -> Path:
    """Start the run, SIGKILL it as soon as checkpoint `kill_after` is published."""
    run_dir = workdir / "outputs" / name
    proc = subprocess.Popen([sys.executable, "-m", "ptpeft_cli", *RUN, f"hydra.run.dir={run_dir}",
                             f"stage_cache_dir={workdir / ('cache_' + name)}"], cwd=workdir, env=_env(workdir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (run_dir / "checkpoints" / kill_after).is_dir():
        assert proc.poll() is None, "the run ended before the checkpoint to kill at"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    return run_dir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("resume")


@pytest.fixture(scope="module")
def reference(workdir: Path) -> Path:
    run_dir = workdir / "outputs" / "reference"
    done = _ptpeft([*RUN, f"hydra.run.dir={run_dir}", f"stage_cache_dir={workdir / 'cache_reference'}"], workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.parametrize("kill_after", ["0-0000010", "1-0000015"], ids=["stage1-prefix", "stage2-prefix+lora"])
def test_killed_run_resumes_to_identical_metrics(kill_after: str, workdir: Path, reference: Path) -> None:
    run_dir = _killed_run(workdir, f"killed_{kill_after}", kill_after)
    done = _ptpeft(["train", f"resume={run_dir}"], workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resume: continuing" in done.stdout
    assert comparable_metrics(run_dir) == comparable_metrics(reference)
    assert json.loads((run_dir / "predictions.json").read_text()) == json.loads((reference / "predictions.json").read_text())
    losses = [json.loads(line)["train/loss"] for line in (run_dir / "history.jsonl").read_text().splitlines()
              if "train/loss" in line]
    expected = [json.loads(line)["train/loss"] for line in (reference / "history.jsonl").read_text().splitlines()
                if "train/loss" in line]
    assert losses == expected  # each logged step once, with the same value


def test_resume_at_the_stage_boundary_trains_stage_two_identically(workdir: Path, reference: Path) -> None:
    """Killed right after stage 1's last checkpoint: stage 2 starts in a fresh process, whose random
    state and data order never saw stage 1's training; each stage is seeded afresh, so it matches."""
    run_dir = _killed_run(workdir, "boundary", "0-end")
    for later in (run_dir / "checkpoints").glob("1-*"):  # as if the kill came before any of them
        shutil.rmtree(later)
    done = _ptpeft(["train", f"resume={run_dir}"], workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "from 0-end" in done.stdout
    assert comparable_metrics(run_dir) == comparable_metrics(reference)


def test_a_cached_stage_one_gives_the_same_run_as_a_trained_one(workdir: Path, reference: Path) -> None:
    """PT-PEFT's stage 1 from the stage cache must not change stage 2 (it once did: the random state
    and data order were those left by training stage 1, and a cache hit trains nothing)."""
    run_dir = workdir / "outputs" / "cached"
    done = _ptpeft([*RUN, f"hydra.run.dir={run_dir}", f"stage_cache_dir={workdir / 'cache_reference'}"], workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reusing cached stage" in done.stdout
    trained = comparable_metrics(reference)
    assert trained.pop("train/final_loss/prefix") > 0  # only the trained run has a stage-1 loss
    assert comparable_metrics(run_dir) == trained


def test_corrupt_checkpoint_is_named_and_not_loaded(workdir: Path) -> None:
    run_dir = _killed_run(workdir, "corrupt", "0-0000010")
    latest = max((p for p in (run_dir / "checkpoints").iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    weights = latest / "trainable.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    done = _ptpeft(["train", f"resume={run_dir}"], workdir)
    assert done.returncode == 2
    assert f"checkpoint {latest} is corrupt: trainable.safetensors does not match its checksum" in done.stderr
    assert "Traceback" not in done.stderr and run_dir.is_dir()


def test_resume_with_a_changed_config_is_refused_with_the_keys(workdir: Path, reference: Path) -> None:
    done = _ptpeft(["train", f"resume={reference}", "method.lr=0.5", "trainer.seed=3"], workdir)
    assert done.returncode == 2
    assert "the config would differ from the run's in method.lr, trainer.seed" in done.stderr
