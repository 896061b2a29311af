"""Data parallelism under torchrun: two gloo processes on CPU train PT-PEFT (both stages, so the model
is re-wrapped when stage 2 adds LoRA) into one run dir, with the losses, predictions and metrics of
one process over the same global batches; the ranks' weights agree after every stage. FSDP shards
full fine-tuning the same way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
# dropout 0: the only randomness in a step that differs between 1 and 2 processes.
RUN = ["train", "method=pt_peft", "task=vqa", "trainer.max_steps=4", "trainer.batch_size=8", "trainer.grad_accum=2",
       "trainer.log_every=1", "trainer.checkpoint_every=2", "trainer.keep_checkpoints=5", "method.lora.dropout=0", "task.dataset.n_train=48", "task.dataset.n_val=4",
       "task.dataset.n_test=16", "trainer.eval_batch_size=8", "logger=none", "analysis.enabled=false",
       "retention.enabled=false", "task.meteor=false", "hardware=cpu"]


def _run(launcher: list[str], args: list[str], workdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PTPEFT_DATA": str(workdir / "data"), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("PTPEFT_RUN_ID", None)
    return subprocess.run([sys.executable, *launcher, "-m", "ptpeft_cli", *RUN, *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=900)


def _losses(run_dir: Path) -> list[tuple[str, int, float]]:
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return [(row["stage"], row["step"], row["train/loss"]) for row in rows if "train/loss" in row]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    workdir = tmp_path_factory.mktemp("ddp")
    single = _run([], [f"hydra.run.dir={workdir / 'single'}", f"stage_cache_dir={workdir / 'cache1'}"], workdir)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
               [f"output_root={workdir / 'ddp'}", f"stage_cache_dir={workdir / 'cache2'}"], workdir)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    run_dirs = list((workdir / "ddp" / "train").iterdir())
    assert len(run_dirs) == 1, run_dirs  # both ranks named the same run dir
    return workdir / "single", run_dirs[0], ddp.stdout


def test_two_processes_write_one_run_dir_once(runs: tuple[Path, Path, str]) -> None:
    _, run_dir, stdout = runs
    assert (run_dir / "metrics.json").is_file() and (run_dir / "predictions.json").is_file()
    assert stdout.count("run dir: ") == 1 and stdout.count("params/trainable=51072") == 1  # rank 0 speaks
    assert len([line for line in (run_dir / "history.jsonl").read_text().splitlines() if '"train/loss"' in line]) == 8
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["0-0000002", "0-end", "1-0000002", "1-end"]


def test_ranks_hold_identical_weights_after_each_stage(runs: tuple[Path, Path, str]) -> None:
    *_, stdout = runs
    assert "[prefix] 2 ranks in sync (trainable sha256 " in stdout
    assert "[prefix+lora] 2 ranks in sync (trainable sha256 " in stdout


def test_losses_equal_one_process_with_the_same_global_batch(runs: tuple[Path, Path, str]) -> None:
    single, ddp, _ = runs
    expected, got = _losses(single), _losses(ddp)
    assert [(stage, step) for stage, step, _ in got] == [(stage, step) for stage, step, _ in expected]
    assert max(abs(a - b) for (*_, a), (*_, b) in zip(expected, got, strict=True)) < 1e-5


def test_gathered_eval_equals_one_process(runs: tuple[Path, Path, str]) -> None:
    single, ddp, _ = runs
    assert json.loads((ddp / "predictions.json").read_text()) == json.loads((single / "predictions.json").read_text())
    one, two = (json.loads((d / "metrics.json").read_text()) for d in (single, ddp))
    assert {k: v for k, v in two.items() if k.startswith("eval/")} == {k: v for k, v in one.items() if k.startswith("eval/")}
    assert two["params/trainable"] == one["params/trainable"]


def test_a_two_process_run_resumes_mid_stage_on_two_processes(runs: tuple[Path, Path, str]) -> None:
    """Each rank goes on with its own RNG state and the shared data position (as if killed after
    stage 2's step-2 checkpoint) and ends where the uninterrupted two-process run ended."""
    _, done, _ = runs
    workdir = done.parents[2]
    stopped = workdir / "stopped"
    shutil.copytree(done, stopped)
    for name in ("metrics.json", "predictions.json"):
        (stopped / name).unlink()
    shutil.rmtree(stopped / "weights")
    shutil.rmtree(stopped / "checkpoints" / "1-end")
    resumed = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"], [f"resume={stopped}"], workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("resuming at step 2") == 1
    expected = json.loads((done / "metrics.json").read_text())
    got = json.loads((stopped / "metrics.json").read_text())
    assert {k: v for k, v in got.items() if not k.startswith(("time/", "throughput/", "memory/"))} == \
        {k: v for k, v in expected.items() if not k.startswith(("time/", "throughput/", "memory/"))}
    assert _losses(stopped) == _losses(done)


def test_fsdp_full_fine_tuning_matches_one_process(tmp_path: Path) -> None:
    full = ["method=full", "trainer.checkpoint_every=0"]
    single = _run([], [*full, f"hydra.run.dir={tmp_path / 'single'}"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    sharded = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
                   [*full, "hardware.distributed=fsdp", f"output_root={tmp_path / 'fsdp'}"], tmp_path)
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    (run_dir,) = (tmp_path / "fsdp" / "train").iterdir()
    assert "[full] 2 ranks in sync (trainable sha256 " in sharded.stdout  # the gathered copies agree
    expected, got = _losses(tmp_path / "single"), _losses(run_dir)
    assert max(abs(a - b) for (*_, a), (*_, b) in zip(expected, got, strict=True)) < 1e-5
    assert json.loads((run_dir / "predictions.json").read_text()) == \
        json.loads((tmp_path / "single" / "predictions.json").read_text())
