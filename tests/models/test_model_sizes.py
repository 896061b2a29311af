"""planning/sizes.py (scripts/model_sizes.py's tables, `ptpeft plan`) counts on shapes only (meta
device): its counts must equal what the methods really train on a materialised model
(`params/trainable` of a run), stage by stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.base import count_parameters
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.planning import sizes


@pytest.mark.parametrize("name", ["llava15", "git", "blip2_opt", "paligemma", "instructblip"])
def test_meta_counts_equal_real_trainable_parameters(
    name: str, load: Callable[..., LoadedModel], tiny_checkpoint: Callable[[str], Path]
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
            found = sizes.footprint(name, meta, cfg, stage)
            assert found is not None and found.trainable == trainable, (column, stage)
        assert counted is not None and counted[0] == trainable, column
        lora_inputs = sum(m.in_features for n, m in loaded.model.named_modules()
                          if isinstance(m, torch.nn.Linear) and ".lora_A." in f"{n}.")
        assert found.lora_inputs == lora_inputs  # the activations LoRA keeps: planning/memory.py
        assert (lora_inputs > 0) == (cfg.name in ("lora", "pt_peft") and cfg.stage2 == "lora"), column
