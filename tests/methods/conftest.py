"""Fixtures for the method tests; the builders live in method_fixtures.py."""

from __future__ import annotations

import pytest
from method_fixtures import LlamaTestFamily, TinyLlavaTestFamily, build_llama, build_llava

from ptpeft_cli.models.base import LoadedModel


@pytest.fixture
def llava() -> LoadedModel:
    return LoadedModel(model=build_llava(), processor=None, family=TinyLlavaTestFamily())


@pytest.fixture
def llama() -> LoadedModel:
    return LoadedModel(model=build_llama(), processor=None, family=LlamaTestFamily())
