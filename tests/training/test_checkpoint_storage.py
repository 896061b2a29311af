"""Checkpoints on a real disk: a save killed with SIGKILL leaves nothing the next run trips over
(and its temp dir is removed), a save that would not fit stops before writing and keeps the last
good checkpoint, old sha256 manifests still verify, and a split smaller than one batch never
spins."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from ptpeft_cli import storage
from ptpeft_cli.errors import UserError
from ptpeft_cli.training import checkpoint as ckpt
from ptpeft_cli.training.loop import BatchStream

STATE = {"optimizer": {"exp_avg": torch.ones(256)}, "rng": {"seed": 1}}
KILLED_SAVE = """
import sys, time
from pathlib import Path
from ptpeft_cli.training import checkpoint as ckpt

run = Path(sys.argv[1])
def slow(directory):
    directory.mkdir()
    (directory / "part.bin").write_bytes(b"x" * 100000)
    (run / "ready").touch()
    time.sleep(120)
ckpt.save(run, stage=0, step=4, global_step=4, stage_done=True, trainer_state={"results": [], "params": [1, 1]},
          save_method=slow)
"""


def _method_files(directory: Path) -> None:
    directory.mkdir()
    storage.write_safetensors({"w": torch.ones(3)}, directory / "w.safetensors")


def _mid(run_dir: Path, step: int) -> Path:
    return ckpt.save(run_dir, stage=0, step=step, global_step=step, stage_done=False,
                     trainable={"w": torch.full((8,), float(step))}, trainer_state=STATE)


def test_a_save_killed_mid_write_leaves_the_last_checkpoint_and_its_temp_dir_is_cleaned(tmp_path: Path) -> None:
    _mid(tmp_path, 2)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(tmp_path)])
    deadline = time.time() + 120
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".0-end.{storage._host()}.{proc.pid}.")
    assert ckpt.latest(tmp_path).path.name == "0-0000002"  # the half save is invisible

    end = ckpt.save(tmp_path, stage=0, step=4, global_step=4, stage_done=True,
                    trainer_state={"results": [], "params": [1, 1]},
                    save_method=_method_files)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["0-0000002", "0-end"]
    assert ckpt.latest(tmp_path) == ckpt.verify(end)
    assert not (end / ckpt.TRAINABLE_FILE).exists()  # a stage end's weights are the method's files only


def test_a_checkpoint_that_would_not_fit_stops_before_writing_and_keeps_the_last(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _mid(tmp_path, 2)
    monkeypatch.setattr(storage, "free_bytes", lambda path: storage.MARGIN + 1000)
    with pytest.raises(storage.NoSpace) as stopped:
        _mid(tmp_path, 4)
    needed = storage.MARGIN + 8 * 4 + 256 * 4
    assert str(stopped.value) == (
        f"not enough disk space to write checkpoint 0-0000004 in {tmp_path / 'checkpoints'}: needs 64.0 MiB "
        f"({needed} bytes), 64.0 MiB ({storage.MARGIN + 1000} bytes) free; the checkpoints already there are "
        f"kept: free space, then resume={tmp_path}")
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["0-0000002"]
    assert ckpt.latest(tmp_path).step == 2


def test_a_full_disk_during_the_write_stops_with_the_same_line_and_leaves_no_temp_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _mid(tmp_path, 2)

    def disk_full(obj: object, path: Path) -> str:
        path.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage, "torch_save", disk_full)
    with pytest.raises(storage.NoSpace, match="not enough disk space to write checkpoint 0-0000004"):
        _mid(tmp_path, 4)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["0-0000002"]


def test_an_old_sha256_manifest_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "0-0000003"
    path.mkdir(parents=True)
    (path / "trainable.safetensors").write_bytes(b"weights")
    files = {"trainable.safetensors": hashlib.sha256(b"weights").hexdigest()}
    (path / ckpt.MANIFEST).write_text(json.dumps({"stage": 0, "step": 3, "global_step": 3, "stage_done": False,
                                                   "files": files}))
    assert ckpt.verify(path).step == 3
    (path / "trainable.safetensors").write_bytes(b"weightz")
    with pytest.raises(UserError, match="trainable.safetensors does not match its checksum"):
        ckpt.verify(path)


def test_a_split_smaller_than_one_batch_raises_instead_of_spinning() -> None:
    loader = DataLoader(list(range(3)), batch_size=4, drop_last=True)
    with pytest.raises(UserError, match="gives no batch"):
        next(BatchStream(loader))
    whole = BatchStream(DataLoader(list(range(4)), batch_size=4, drop_last=True))
    assert [next(whole).tolist() for _ in range(3)] == [[0, 1, 2, 3]] * 3  # epochs repeat as before


def test_publish_weights_links_the_last_stage_end(tmp_path: Path) -> None:
    ckpt.save(tmp_path, stage=0, step=4, global_step=4, stage_done=True, trainer_state={"results": []},
              save_method=_method_files)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "stale.bin").write_bytes(b"from an earlier attempt")
    ckpt.publish_weights(tmp_path, tmp_path / "weights", 1, lambda d: pytest.fail("linked, not saved"))
    assert [p.name for p in (tmp_path / "weights").iterdir()] == ["w.safetensors"]
    source = tmp_path / "checkpoints" / "0-end" / "method" / "w.safetensors"
    assert os.path.samefile(tmp_path / "weights" / "w.safetensors", source)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
