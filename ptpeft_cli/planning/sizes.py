"""Trainable parameters and the static training memory of a method on a model, from shapes alone.

The model is instantiated on the `meta` device (no memory) and the real method code
(`setup_stage`, peft's LoRA wrapping, our adapters and prefix encoder) decides what trains, so the
counts are exactly what `ptpeft train` reports as `params/trainable` (tests/models/test_model_sizes.py).

Static memory = weights + gradients + AdamW state for `model.dtype=auto` on a GPU (bf16 weights):
frozen parameters 2 bytes; trained bf16 parameters (full, adapters, prefix) 2 + 2 (gradient) + 4
(two AdamW moments kept in the parameter's dtype) = 8 bytes; LoRA weights, which peft keeps in fp32
over a bf16 model, 4 + 4 + 8 = 16 bytes. Activations are planning/memory.py's business.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from ptpeft_cli.config import MethodConfig, conf_dir
from ptpeft_cli.errors import UserError
from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.prefix import build_prefix, check_prefix_mode, prefix_meta
from ptpeft_cli.models import get_family
from ptpeft_cli.models.base import LoadedModel

# docs/models.md's columns: column -> (method config file, overrides)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "full": ("full", {}),
    "lora": ("lora", {}),
    "adapter": ("adapter", {}),
    "prefix input": ("prefix", {"prefix": {"mode": "input"}}),
    "prefix kv": ("prefix", {"prefix": {"mode": "kv"}}),
    "pt_peft (prefix+LoRA)": ("pt_peft", {}),
    "pt_adapter": ("pt_adapter", {}),
}
FROZEN_BYTES, TRAINED_BYTES, LORA_BYTES = 2, 8, 16


@dataclass(frozen=True)
class Footprint:
    """What one method stage trains on one model."""

    total: int  # parameters, tied weights once
    trainable: int
    lora: int  # of which LoRA weights (fp32 under peft)
    static_bytes: int  # weights + gradients + AdamW state
    lora_inputs: int  # in_features summed over every LoRA-wrapped Linear (what LoRA keeps per token)


def method_config(name: str, overrides: dict[str, Any]) -> MethodConfig:
    """The shipped defaults of conf/method/<name>.yaml (pt_adapter extends pt_peft)."""
    cfg = OmegaConf.structured(MethodConfig)
    files = ["pt_peft", "pt_adapter"] if name == "pt_adapter" else [name]
    for file in files:
        values = OmegaConf.load(conf_dir() / "method" / f"{file}.yaml")
        values.pop("defaults", None)
        cfg = OmegaConf.merge(cfg, values)
    return OmegaConf.to_object(OmegaConf.merge(cfg, overrides))


def footprint(family_name: str, base: nn.Module, cfg: Any, stage: int | None = None) -> Footprint | None:
    """What `cfg` trains on a copy of `base` in `stage` (None: the method's last stage; PT-PEFT's
    stage 0 is its prefix alone); None if the method refuses this model."""
    family = get_family(family_name)
    model = copy.deepcopy(base)
    family.configure(model)  # the generic family reads its LoRA targets from the model
    loaded = LoadedModel(model=model, processor=None, family=family)
    kind = "prefix" if cfg.name == "pt_peft" and stage == 0 else cfg.name
    prefix_params = 0
    try:
        if kind in ("prefix", "pt_peft"):  # built, not initialised (that would run the model)
            check_prefix_mode(loaded, cfg.prefix.mode)
            prefix_params = sum(p.numel() for p in build_prefix(loaded, prefix_meta(loaded, cfg)).parameters())
        if kind == "full":  # FullMethod's rule; its tied-weight dedup reads storage, absent on meta
            for name, param in model.named_parameters():
                param.requires_grad_(family.full_trainable(name, bool(cfg.train_vision)))
        elif kind in ("prefix", "none"):
            loaded.model.requires_grad_(False)
        else:
            get_method(cfg.stage2 if kind == "pt_peft" else kind).setup_stage(loaded, cfg, 0)
    except UserError:
        return None
    params = {id(p): p for p in loaded.model.parameters()}  # meta tensors: compare identities
    lora = sum(p.numel() for n, p in loaded.model.named_parameters() if p.requires_grad and "lora_" in n)
    trained = sum(p.numel() for p in params.values() if p.requires_grad)
    frozen = sum(p.numel() for p in params.values() if not p.requires_grad)
    other = trained - lora + prefix_params
    lora_inputs = sum(m.in_features for n, m in loaded.model.named_modules()
                      if isinstance(m, nn.Linear) and ".lora_A." in f"{n}.")
    return Footprint(total=frozen + trained, trainable=lora + other, lora=lora,
                     static_bytes=FROZEN_BYTES * frozen + LORA_BYTES * lora + TRAINED_BYTES * other,
                     lora_inputs=lora_inputs)


def count(family_name: str, base: nn.Module, cfg: Any) -> tuple[int, int] | None:
    """(trainable parameters, static training bytes) of `cfg`'s last stage; None if refused."""
    found = footprint(family_name, base, cfg)
    return None if found is None else (found.trainable, found.static_bytes)
