"""What `ptpeft train` puts on disk, through the CLI: each trained tensor stored once (the run's
weights/, the stage cache and a cache hit's stage end are hard links to the stage-end
checkpoint), a checkpoint that would not fit stops the run with one line and resumes to the same
numbers, a cache hit's run resumes on its own, and a sweep with a failed job exits 1."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from run_metrics import comparable_metrics
from safetensors import safe_open

from ptpeft_cli import storage
from ptpeft_cli.training import checkpoint as ckpt

from .conftest import SHORT_RUN, SMALL_WORLD, run_cli

pytestmark = pytest.mark.slow
QUICK = ["task=captioning", "trainer.max_steps=4", "logger=none", "analysis.enabled=false", "retention.enabled=false",
         *SMALL_WORLD, *SHORT_RUN]



def _tensor_copies(*roots: Path) -> dict[str, set[int]]:
    """tensor name -> inodes of the safetensors files that hold it (a file's links count once)."""
    copies: dict[str, set[int]] = defaultdict(set)
    for root in roots:
        for path in root.rglob("*.safetensors"):
            with safe_open(str(path), "pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                    copies[name].add(path.stat().st_ino)
    return copies


def _same_files(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all((a / f).samefile(b / f) for f in files_a)


def test_a_full_fine_tune_stores_its_weights_once(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    run_dir = workdir / "disk" / "full"
    run_cli(["train", "method=full", *QUICK, f"hydra.run.dir={run_dir}"], workdir, monkeypatch, capsys)
    end = run_dir / "checkpoints" / "0-end"
    assert sorted(p.name for p in end.iterdir()) == [ckpt.MANIFEST, ckpt.METHOD_DIR, ckpt.STATE_FILE]
    assert _same_files(end / ckpt.METHOD_DIR, run_dir / "weights")
    copies = _tensor_copies(run_dir)
    assert len(copies) > 10 and all(len(inodes) == 1 for inodes in copies.values())
    assert (run_dir / "weights" / "full.safetensors").stat().st_nlink == 2
    assert ckpt.verify(end).stage_done


def test_pt_peft_stage_one_is_stored_once_across_runs_and_the_cache(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """The cache entry links run A's stage-1 end; run B, a cache hit, links the entry as its own
    stage-1 end, so that B resumes without the cache; all stage-1 tensors exist once."""
    cache, first, second = (workdir / "disk" / name for name in ("cache", "pt_a", "pt_b"))
    args = ["train", "method=pt_peft", *QUICK, f"stage_cache_dir={cache}"]
    run_cli([*args, f"hydra.run.dir={first}"], workdir, monkeypatch, capsys)
    out, _ = run_cli([*args, f"hydra.run.dir={second}", "trainer.checkpoint_every=2"], workdir, monkeypatch, capsys)
    assert "reusing cached stage" in out
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    for run_dir in (first, second):
        assert _same_files(run_dir / "checkpoints" / "0-end" / ckpt.METHOD_DIR / "prefix", entry / "prefix")
        assert _same_files(run_dir / "checkpoints" / "1-end" / ckpt.METHOD_DIR, run_dir / "weights")
    stage_one = _tensor_copies(entry)
    everything = _tensor_copies(first / "checkpoints" / "0-end", second / "checkpoints" / "0-end", cache)
    assert stage_one and everything.keys() == stage_one.keys()
    assert all(len(inodes) == 1 for inodes in everything.values())
    expected = comparable_metrics(first)
    assert expected.pop("train/final_loss/prefix") > 0  # only the run that trained stage 1 has its loss
    assert comparable_metrics(second) == expected

    # Killed after its step-2 checkpoint of stage 2: it resumes from its own stage-1 end.
    for name in ("metrics.json", "predictions.json"):
        (second / name).unlink()
    shutil.rmtree(second / "weights")
    shutil.rmtree(second / "checkpoints" / "1-end")
    shutil.rmtree(cache)
    out, _ = run_cli(["train", f"resume={second}"], workdir, monkeypatch, capsys)
    assert "from 1-0000002" in out
    assert comparable_metrics(second) == expected


def test_a_checkpoint_that_does_not_fit_stops_the_run_and_it_resumes_to_the_same_numbers(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    args = ["train", "method=lora", *QUICK, "trainer.checkpoint_every=1"]
    reference, stopped = workdir / "disk" / "lora_reference", workdir / "disk" / "lora_stopped"
    run_cli([*args, f"hydra.run.dir={reference}"], workdir, monkeypatch, capsys)

    calls = []

    def free_bytes(path: Path) -> int:  # room for the first checkpoint only
        calls.append(path)
        return 1 << 50 if len(calls) == 1 else storage.MARGIN + 12345

    with monkeypatch.context() as full_disk:
        full_disk.setattr(storage, "free_bytes", free_bytes)
        with pytest.raises(SystemExit) as exit_info:
            run_cli([*args, f"hydra.run.dir={stopped}"], workdir, full_disk, capsys)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    lines = [line for line in err.splitlines() if line.startswith("ptpeft:")]
    assert len(lines) == 1 and lines[0].startswith(
        f"ptpeft: run stopped: not enough disk space to write checkpoint 0-0000002 in {stopped / 'checkpoints'}: needs ")
    assert f"MiB ({storage.MARGIN + 12345} bytes) free; the checkpoints already there are kept: free space, then " \
           f"resume={stopped}" in lines[0]
    assert "Traceback" not in err and (stopped / "error.txt").read_text().startswith("not enough disk space")
    assert [p.name for p in (stopped / "checkpoints").iterdir()] == ["0-0000001"]
    assert ckpt.verify(stopped / "checkpoints" / "0-0000001").step == 1

    out, _ = run_cli(["train", f"resume={stopped}"], workdir, monkeypatch, capsys)
    assert "from 0-0000001" in out
    assert comparable_metrics(stopped) == comparable_metrics(reference)


def test_a_sweep_with_a_failed_job_writes_its_summary_and_exits_1(workdir: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    sweep = tmp_path / "sweep"
    quick = [a for a in QUICK if not a.startswith("trainer.batch_size=")]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["train", "-m", "method=lora", "trainer.batch_size=8,4096", "trainer.max_steps=1", *quick,
                 f"hydra.sweep.dir={sweep}"], workdir, monkeypatch, capsys)
    captured = capsys.readouterr()
    assert exit_info.value.code == 1
    summary = (sweep / "summary.md").read_text()
    assert "| 0_lora_captioning | lora | captioning | ok |" in summary
    assert "| 1_lora_captioning | lora | captioning | failed: the train split 'train' has " in summary
    assert "| job | method |" in captured.out
    assert captured.err.strip().splitlines()[-1] == (
        f"ptpeft: sweep failed: 1 of 2 job(s) failed or stopped (1_lora_captioning); see error.txt in each job's "
        f"dir and {sweep / 'summary.md'}")
