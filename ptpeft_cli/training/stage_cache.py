"""Content-addressed cache of finished stages (PT-PEFT's stage 1), shared by sweeps.

An entry is a directory named by the fingerprint of everything that determines the stage, holding
the method's saved weights and a `stage.json` that repeats the fingerprint and records each file's
digest. The weights are hard links to the files of the stage-end checkpoint that produced them
(stored once; either name survives the other's deletion; a copy, logged, only where the cache is
on a filesystem that refuses the link). Entries are published with one rename, so a crash never
leaves a half entry that looks complete; temp dirs of killed writers are removed once provably
dead (storage.remove_dead_temp_dirs: parallel jobs write here).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ptpeft_cli import storage
from ptpeft_cli.errors import UserError

MARKER = "stage.json"


def lookup(cache_dir: Path, fingerprint: str) -> Path | None:
    """The entry for `fingerprint`, or None. A corrupt or foreign entry is a user-visible error."""
    entry = cache_dir / fingerprint
    if not entry.exists():
        return None
    marker = entry / MARKER
    try:
        info = json.loads(marker.read_text())
        recorded = info["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"stage cache entry {entry} is corrupt (unreadable {MARKER}); delete it to rebuild") from None
    if recorded != fingerprint:
        raise UserError(f"stage cache entry {entry} was written for another config ({recorded}); delete it to rebuild")
    files = info.get("files")  # absent in entries written before digests were recorded
    if files is not None and storage.digests(entry, exclude=frozenset({MARKER})) != files:
        raise UserError(f"stage cache entry {entry} is corrupt (its files do not match {MARKER}); delete it to rebuild")
    return entry


def store(cache_dir: Path, fingerprint: str, source: Path, info: dict[str, Any]) -> Path:
    """Publish the files of `source` (a stage-end checkpoint's method dir) as the entry for
    `fingerprint`, unless another job of the sweep already did."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    storage.remove_dead_temp_dirs(cache_dir)
    entry = cache_dir / fingerprint
    if entry.exists():
        return entry
    tmp = storage.temp_dir(cache_dir, fingerprint)
    try:
        storage.link_tree(source, tmp, what=f"stage cache entry {fingerprint[:12]}")
        marker = {"fingerprint": fingerprint, **info, "hash": storage.HASH, "files": storage.digests(tmp)}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
        try:
            os.replace(tmp, entry)
        except OSError as error:  # another job won the race since: keep theirs
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry
