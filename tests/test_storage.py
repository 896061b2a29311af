"""storage.py: files hashed while written (and byte-identical to the libraries' own), hard links
with a logged copy where links are impossible, the space check, and dead temp dirs told from
live ones."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import xxhash
from safetensors.torch import load_file, save_file

from ptpeft_cli import storage


def _tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"layer.b.weight": torch.randn(3, 5, generator=generator), "layer.a.weight": torch.randn(7, generator=generator),
            "half": torch.randn(2, 3, generator=generator).to(torch.bfloat16), "fp16": torch.randn(4).half(),
            "steps": torch.arange(5), "mask": torch.tensor([True, False, True]), "scalar": torch.tensor(2.5),
            "empty": torch.zeros(0, 4), "bytes": torch.arange(6, dtype=torch.uint8).reshape(2, 3),
            "strided": torch.randn(4, 6, generator=generator)[:, ::2]}


@pytest.mark.parametrize("metadata", [{"format": "pt"}, None], ids=["metadata", "no-metadata"])
def test_safetensors_written_by_hand_are_the_librarys_bytes(metadata: dict | None, tmp_path: Path) -> None:
    tensors = _tensors()
    digest = storage.write_safetensors(tensors, tmp_path / "mine.safetensors", metadata)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "theirs.safetensors"), metadata=metadata)
    mine = (tmp_path / "mine.safetensors").read_bytes()
    assert mine == (tmp_path / "theirs.safetensors").read_bytes()
    assert digest == xxhash.xxh3_128(mine).hexdigest()
    loaded = load_file(str(tmp_path / "mine.safetensors"))
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name


def test_torch_save_through_the_hasher_loads_and_its_digest_is_the_files(tmp_path: Path) -> None:
    state = {"optimizer": {"state": {0: {"exp_avg": torch.randn(100, 10)}}}, "rng": torch.get_rng_state(),
             "window": [1.5, 2.0], "name": "x"}
    digest = storage.torch_save(state, tmp_path / "state.pt")
    assert digest == xxhash.xxh3_128((tmp_path / "state.pt").read_bytes()).hexdigest()
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert loaded["window"] == [1.5, 2.0] and loaded["name"] == "x"


def test_a_written_file_and_its_hard_link_are_never_read_to_be_hashed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    digest = storage.write_safetensors(_tensors(), tmp_path / "w.safetensors")
    os.link(tmp_path / "w.safetensors", tmp_path / "link.safetensors")
    with monkeypatch.context() as patched:
        patched.setattr(Path, "open", lambda *a, **k: pytest.fail("read for its digest"))
        assert storage.file_digest(tmp_path / "w.safetensors") == digest
        assert storage.file_digest(tmp_path / "link.safetensors") == digest
    # A file changed since it was written is read again; sha256 (old manifests) is always read.
    (tmp_path / "w.safetensors").write_bytes(b"changed")
    assert storage.file_digest(tmp_path / "w.safetensors") == xxhash.xxh3_128(b"changed").hexdigest()
    assert storage.file_digest(tmp_path / "w.safetensors", "sha256") == hashlib.sha256(b"changed").hexdigest()


def test_link_tree_stores_each_file_once(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.bin").write_bytes(b"a" * 1000)
    (source / "b.json").write_text("{}")
    assert storage.link_tree(source, tmp_path / "dst", exclude=frozenset({"b.json"})) == 0
    linked = tmp_path / "dst" / "sub" / "a.bin"
    assert linked.stat().st_ino == (source / "sub" / "a.bin").stat().st_ino and linked.stat().st_nlink == 2
    assert not (tmp_path / "dst" / "b.json").exists()


def test_where_links_are_refused_link_tree_copies_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.bin").write_bytes(os.urandom(3000))

    def refuse(*_: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(storage.os, "link", refuse)
    with caplog.at_level(logging.WARNING, logger="ptpeft"):
        assert storage.link_tree(source, tmp_path / "dst") == 3000
    assert (tmp_path / "dst" / "a.bin").read_bytes() == (source / "a.bin").read_bytes()
    assert (tmp_path / "dst" / "a.bin").stat().st_ino != (source / "a.bin").stat().st_ino
    assert f"cannot hard-link {source} into {tmp_path / 'dst'} (Invalid cross-device link): copying" in caplog.text
    monkeypatch.setattr(storage, "free_bytes", lambda path: 1000)
    with pytest.raises(storage.NoSpace, match=r"needs 64\.0 MiB \(67111864 bytes\), 1000 B \(1000 bytes\) free"):
        storage.link_tree(source, tmp_path / "dst2")


def test_require_space_names_the_path_the_bytes_needed_and_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "free_bytes", lambda path: 5 << 30)
    storage.require_space(tmp_path / "not" / "yet", 4 << 30, "x")  # fits; a missing dir is checked at its parent
    with pytest.raises(storage.NoSpace) as stopped:
        storage.require_space(tmp_path, 5 << 30, "checkpoint 0-end", "; hint")
    assert str(stopped.value) == (f"not enough disk space to write checkpoint 0-end in {tmp_path}: needs 5.1 GiB "
                                  f"({(5 << 30) + storage.MARGIN} bytes), 5.0 GiB ({5 << 30} bytes) free; hint")


def test_only_dead_writers_temp_dirs_are_removed(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = storage._host()
        dirs = {"dead": f".abc.{host}.{dead_pid}.x1", "live": f".abc.{host}.{live.pid}.x2",
                "other_host": f".abc.elsewhere.{dead_pid}.x3", "untagged": ".abc.x4", "old_untagged": ".abc.x5",
                "not_temp": "abc"}
        for name in dirs.values():
            (tmp_path / name).mkdir()
        old = time.time() - storage.STALE_AFTER_S - 60
        os.utime(tmp_path / dirs["old_untagged"], (old, old))
        removed = storage.remove_dead_temp_dirs(tmp_path)
        assert sorted(p.name for p in removed) == sorted([dirs["dead"], dirs["old_untagged"]])
        assert len(storage.remove_dead_temp_dirs(tmp_path, single_writer=True)) == 3  # all hidden ones
        assert [p.name for p in tmp_path.iterdir()] == [dirs["not_temp"]]
    finally:
        live.kill()
        live.wait()
