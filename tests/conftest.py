"""Session fixtures shared across test packages: a small synthetic world written once (deterministic, read-only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from small_world_spec import SMALL_SPEC

from ptpeft_cli.synthetic.writer import WorldPaths, ensure_world

# Helper modules of one test package are shared by others (tiny model builders, method configs).
sys.path[:0] = [str(Path(__file__).parent / package) for package in ("methods", "models")]


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> WorldPaths:
    return ensure_world(
        Path(tmp_path_factory.mktemp("world")), SMALL_SPEC, workers=1, progress=False
    )
