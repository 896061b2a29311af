"""A small synthetic world written once per test session (it is deterministic and read-only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptpeft_cli.data.writer import WorldPaths, WorldSpec, ensure_world

SMALL_SPEC = WorldSpec(seed=3, n_pretrain=50, n_train=20, n_val=5, n_test=5)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> WorldPaths:
    return ensure_world(
        Path(tmp_path_factory.mktemp("world")), SMALL_SPEC, workers=1, progress=False
    )
