"""scripts/model_sizes.py counts on shapes only (meta device): its counts must equal what the
methods really train on a materialised model (`params/trainable` of a run)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from transformers import AutoConfig

from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.base import count_parameters
from ptpeft_cli.models.base import LoadedModel

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "model_sizes.py"


@pytest.fixture(scope="module")
def sizes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("model_sizes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["llava15", "git", "blip2_opt", "paligemma", "instructblip"])
def test_meta_counts_equal_real_trainable_parameters(
    name: str, sizes: ModuleType, load: Callable[..., LoadedModel], tiny_checkpoint: Callable[[str], Path]
) -> None:
    family = load(name).family
    with torch.device("meta"):
        meta = family.model_class(AutoConfig.from_pretrained(tiny_checkpoint(name)))
    for column, (file, overrides) in sizes.METHODS.items():
        cfg = sizes.method_config(file, overrides)
        counted = sizes.count(name, meta, cfg)
        if cfg.prefix.mode not in family.prefix_modes and cfg.name in ("prefix", "pt_peft"):
            assert counted is None, column
            continue
        loaded = load(name)
        method = get_method(cfg.name)
        for stage in range(len(method.stages(cfg, 1))):
            method.setup_stage(loaded, cfg, stage)
        trainable, total = count_parameters(loaded.model)
        assert counted is not None and counted[0] == trainable, column
