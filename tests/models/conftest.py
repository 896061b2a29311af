"""Tiny on-disk checkpoints of every family, built once per session (see tiny_builders.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_builders import BUILDERS, model_cfg

from ptpeft_cli.models import get_family
from ptpeft_cli.models.base import LoadedModel


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = BUILDERS[name](tmp_path_factory.mktemp(name))
        return built[name]

    return get


@pytest.fixture
def load(tiny_checkpoint: Callable[[str], Path]) -> Callable[..., LoadedModel]:
    """`load(family, **model_cfg_overrides)`: a fresh model from its tiny checkpoint directory."""

    def loader(name: str, **overrides: object) -> LoadedModel:
        return get_family(name).load(model_cfg(name, tiny_checkpoint(name), **overrides))

    return loader
