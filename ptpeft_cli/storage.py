"""How ptpeft puts large files on disk: written once, hashed on the way, space checked first.

A 7B full fine-tune writes ~14 GB per copy of its weights; writing them three times and then
hashing them in a second single-threaded pass (sha256, ~1.2 GB/s here) filled a 64 GB disk and
outlived a job's time limit. So:

- *Hash while writing.* `write_safetensors` and `torch_save` push every byte through one
  xxh3_128 hasher on its way to the file (measured on this machine, 1 GiB in memory: xxh3_128
  19 GB/s, sha256 1.16 GB/s, one core). Digests of files written this way are remembered by inode
  (device, inode, size, mtime), so `file_digest` of such a file (or of a hard link to it) costs
  nothing; only small files written by libraries (peft's adapter files, JSON) are read back.
  Manifests name their algorithm; ones without a name are the older sha256 ones.
- *Write once.* `link_tree` publishes existing files under a second name with hard links (no
  bytes written; both names survive the other's deletion). Where a link is impossible (another
  filesystem, a filesystem without links) it copies, after a space check, and says so in the log.
- *Check space first.* `require_space` compares the bytes a write needs with the free space
  (`free_bytes`, the one probe) and stops the run with one line (`NoSpace`, a `RunStopped`: exit 1,
  run dir kept, resumable) before anything is written.
- *Temp dirs that die are recognisable.* `temp_dir` names carry the host and pid of their
  writer, so `remove_dead_temp_dirs` can remove those a killed process left, even in a directory
  that parallel jobs share (the stage cache).

Why a safetensors writer by hand: the library serialises in Rust from a path or into one bytes
object (a second copy in memory of what may be tens of GB) and exposes no stream to hash. The
format is one little-endian u64 header length, a JSON header (padded with spaces to 8 bytes) and
the raw tensors; this writer lays them out in the library's own order, so its files are
byte-identical to `safetensors.torch.save_file`'s (tested) and load with `load_file`.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import xxhash

from ptpeft_cli.errors import RunStopped

log = logging.getLogger("ptpeft")

HASH = "xxh3_128"
LEGACY_HASH = "sha256"  # manifests written before HASH existed name no algorithm
MARGIN = 64 << 20  # bytes kept free beyond an estimate (file-system metadata, JSON, pickles)
STALE_AFTER_S = 24 * 3600  # a temp dir whose writer cannot be asked is dead after a day
_BLOCK = 64 << 20
# safetensors' order of tensors in a file: dtypes from the widest alignment down, then by name.
_DTYPES: list[tuple[torch.dtype, str]] = [
    (torch.uint64, "U64"), (torch.int64, "I64"), (torch.float64, "F64"), (torch.complex64, "C64"),
    (torch.float32, "F32"), (torch.uint32, "U32"), (torch.int32, "I32"), (torch.bfloat16, "BF16"),
    (torch.float16, "F16"), (torch.uint16, "U16"), (torch.int16, "I16"), (torch.float8_e4m3fn, "F8_E4M3"),
    (torch.float8_e5m2, "F8_E5M2"), (torch.int8, "I8"), (torch.uint8, "U8"), (torch.bool, "BOOL")]
_RANK = {dtype: rank for rank, (dtype, _) in enumerate(_DTYPES)}
_NAME = dict(_DTYPES)
# Digests of files this process wrote through `HashingFile`, by (device, inode, size, mtime_ns):
# a file changed since has another size or mtime and is read again. ptpeft never rewrites a file
# in place (it writes new files and renames), so a hit is the file's content.
_KNOWN: dict[tuple[int, int, int, int], str] = {}


class NoSpace(RunStopped):
    """A large write that would not fit: the run stops before writing (exit 1, run dir kept)."""


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding `path` (the one probe every space check asks)."""
    return shutil.disk_usage(path).free


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def no_space(directory: Path, needed: int, what: str, resume_hint: str = "") -> NoSpace:
    free = free_bytes(_existing(directory))
    return NoSpace(f"not enough disk space to write {what} in {directory}: needs {human(needed)} ({needed} bytes), "
                   f"{human(free)} ({free} bytes) free{resume_hint}")


def require_space(directory: Path, estimate: int, what: str, resume_hint: str = "") -> None:
    """Stop (NoSpace) unless `estimate` bytes plus MARGIN fit on `directory`'s filesystem."""
    needed = int(estimate) + MARGIN
    if needed > free_bytes(_existing(directory)):
        raise no_space(directory, needed, what, resume_hint)


@contextmanager
def out_of_space_stops(directory: Path, estimate: int, what: str, resume_hint: str = "") -> Iterator[None]:
    """A write that still hits ENOSPC (the estimate was short, or someone else filled the disk)
    stops the run with the same one line instead of a traceback."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise no_space(directory, int(estimate) + MARGIN, what, resume_hint) from None


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a (nested) state: what writing it costs on disk, near enough."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


class HashingFile(io.RawIOBase):
    """A new file that hashes (xxh3_128) every byte written to it; the digest is remembered for
    `file_digest` when it is closed."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._hash = xxhash.xxh3_128()
        self.digest: str | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._hash.update(view)
        self._file.write(view)
        return view.nbytes

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self.closed:
            self._file.close()
            self.digest = self._hash.hexdigest()
            _KNOWN[_identity(self.path.stat())] = self.digest
        super().close()

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:  # a failed write: the partial file's digest is nobody's business
            self._file.close()
            super().close()
            return
        self.close()


def _raw(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes as laid out in memory (little-endian, C order), without a copy on CPU."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: Path,
                      metadata: Mapping[str, str] | None = None) -> str:
    """Write a safetensors file, hashing it on the way; returns its digest."""
    if any(t.dtype not in _RANK for t in tensors.values()):  # a dtype this writer does not know
        from safetensors.torch import save_file

        save_file(dict(tensors), str(path), metadata=dict(metadata) if metadata else None)
        return file_digest(path)
    order = sorted(tensors.items(), key=lambda item: (_RANK[item[1].dtype], item[0]))
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, tensor in order:
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _NAME[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with HashingFile(path) as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for _, tensor in order:
            data = _raw(tensor)
            for start in range(0, data.nbytes, _BLOCK):
                out.write(data[start:start + _BLOCK])
    assert out.digest is not None
    return out.digest


def torch_save(obj: Any, path: Path) -> str:
    """`torch.save` through the hasher; returns the file's digest."""
    with HashingFile(path) as out:
        torch.save(obj, out)
    assert out.digest is not None
    return out.digest


def file_digest(path: Path, algorithm: str = HASH) -> str:
    """The file's digest: free for files this process wrote through HashingFile (and their hard
    links), else one read of the file."""
    path = Path(path)
    if algorithm == HASH:
        known = _KNOWN.get(_identity(path.stat()))
        if known is not None:
            return known
        digest: Any = xxhash.xxh3_128()
    elif algorithm == LEGACY_HASH:
        digest = hashlib.sha256()
    else:
        raise ValueError(f"unknown hash {algorithm!r}")
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def digests(root: Path, exclude: frozenset[str] = frozenset()) -> dict[str, str]:
    """relative path -> digest for every file under `root`."""
    return {str(p.relative_to(root)): file_digest(p) for p in sorted(root.rglob("*"))
            if p.is_file() and str(p.relative_to(root)) not in exclude}


_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}


def link_tree(source: Path, target: Path, exclude: frozenset[str] = frozenset(), what: str = "") -> int:
    """`target` (new) holds every file of `source` under the same relative path, hard-linked:
    stored once, each name surviving the other's deletion. Where the filesystem refuses a link
    (e.g. `target` is on another one), the file is copied instead, after a space check, with a
    warning naming both places. Returns the bytes copied (0 when everything was linked)."""
    files = [p for p in sorted(source.rglob("*")) if p.is_file() and str(p.relative_to(source)) not in exclude]
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    for index, file in enumerate(files):
        destination = target / file.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, destination)
            continue
        except OSError as error:
            if error.errno not in _NO_LINK:
                raise
            reason = error.strerror
        remaining = sum(p.stat().st_size for p in files[index:])
        if not copied:
            log.warning("cannot hard-link %s into %s (%s): copying %s instead", source, target, reason, human(remaining))
            require_space(target, remaining, what or f"a copy of {source}")
        with out_of_space_stops(target, remaining, what or f"a copy of {source}"):
            copy_file(file, destination)
        copied += file.stat().st_size
    return copied


def copy_file(source: Path, target: Path) -> str:
    """A byte copy hashed on the way (the copy's digest is then known without a read)."""
    with source.open("rb") as handle, HashingFile(target) as out:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            out.write(block)
    assert out.digest is not None
    return out.digest


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


_TEMP = re.compile(r"^\.(?P<name>[^.]+)\.(?P<host>[^.]+)\.(?P<pid>\d+)\.[^.]+$")


def temp_dir(parent: Path, name: str) -> Path:
    """A new hidden dir `.<name>.<host>.<pid>.<random>` in `parent`: a write in progress, or what a
    killed writer left (see `remove_dead_temp_dirs`)."""
    return Path(tempfile.mkdtemp(prefix=f".{name}.{_host()}.{os.getpid()}.", dir=parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def is_dead(path: Path, now: float | None = None) -> bool:
    """A temp dir whose writer is gone: one of this host whose pid no longer runs (or is this
    process, which writes one thing at a time and cleans up before its next write), else one older
    than STALE_AFTER_S (another host's, or one written before dirs were tagged)."""
    match = _TEMP.match(path.name)
    if match and match["host"] == _host():
        pid = int(match["pid"])
        return pid == os.getpid() or not _alive(pid)
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > STALE_AFTER_S


def remove_dead_temp_dirs(parent: Path, prefix: str = "", single_writer: bool = False) -> list[Path]:
    """Remove hidden dirs `.<prefix>...` in `parent` that no live write owns. With
    `single_writer` the caller is the only process that writes there (rank 0 in its own run dir),
    so every such dir is a dead one's. Returns what was removed."""
    if not parent.is_dir():
        return []
    removed = []
    for path in parent.iterdir():
        if path.name.startswith(f".{prefix}") and path.is_dir() and (single_writer or is_dead(path)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d temp dir(s) left by killed writes in %s", len(removed), parent)
    return removed


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a finished temp dir to `final` with one rename. An existing `final` is first renamed
    away (a kill between the two renames leaves no `final`, never a half-deleted one)."""
    if final.exists():
        trash = temp_dir(final.parent, "trash")
        os.replace(final, trash / final.name)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
