"""Content-addressed cache of finished stages (PT-PEFT's stage 1), shared by sweeps.

An entry is a directory named by the fingerprint of everything that determines the stage, holding
the method's saved weights and a `stage.json` that repeats the fingerprint; entries are written
atomically (temp dir + rename), so a crash never leaves a half entry that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptpeft_cli.errors import UserError

MARKER = "stage.json"


def lookup(cache_dir: Path, fingerprint: str) -> Path | None:
    """The entry for `fingerprint`, or None. A corrupt or foreign entry is a user-visible error."""
    entry = cache_dir / fingerprint
    if not entry.exists():
        return None
    marker = entry / MARKER
    try:
        recorded = json.loads(marker.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"stage cache entry {entry} is corrupt (unreadable {MARKER}); delete it to rebuild") from None
    if recorded != fingerprint:
        raise UserError(f"stage cache entry {entry} was written for another config ({recorded}); delete it to rebuild")
    return entry


def store(cache_dir: Path, fingerprint: str, save: Callable[[Path], None], info: dict[str, Any]) -> Path:
    """Write an entry via `save(tmp_dir)` then publish it with one rename."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    entry = cache_dir / fingerprint
    tmp = Path(tempfile.mkdtemp(prefix=f".{fingerprint}.", dir=cache_dir))
    try:
        save(tmp)
        (tmp / MARKER).write_text(json.dumps({"fingerprint": fingerprint, **info}, indent=2))
        if entry.exists():  # another job of the sweep won the race: keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry
