"""Session fixtures shared across test packages, written once (deterministic, read-only): a small
synthetic world, and a small tree in the official COCO / Karpathy / VQAv2 layout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from official_tree import OfficialTree, write_official_tree
from small_world_spec import SMALL_SPEC

from ptpeft_cli.synthetic.writer import WorldPaths, ensure_world

# Helper modules of one test package are shared by others (tiny model builders, method configs).
sys.path[:0] = [str(Path(__file__).parent / package) for package in ("methods", "models")]


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> WorldPaths:
    return ensure_world(
        Path(tmp_path_factory.mktemp("world")), SMALL_SPEC, workers=1, progress=False
    )


@pytest.fixture(scope="session")
def official_tree(tmp_path_factory: pytest.TempPathFactory) -> OfficialTree:
    """Read-only; a test that breaks the tree writes its own with `write_official_tree(tmp_path)`."""
    return write_official_tree(tmp_path_factory.mktemp("official"))
