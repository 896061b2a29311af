"""Trainable parameters and the static training memory of a method on a model, from shapes alone.

The model is instantiated on the `meta` device (no memory) and the real method code
(`setup_stage`, peft's LoRA wrapping, our adapters and prefix encoder) decides what trains, so the
counts are exactly what `ptpeft train` reports as `params/trainable` (tests/models/test_model_sizes.py).

Static memory = weights + gradients + AdamW state. `model.dtype=auto` on a GPU loads bf16 weights,
except for full fine-tuning, which trains fp32 weights under bf16 autocast (methods/base.py
`weights_dtype`). With bf16 weights: frozen parameters 2 bytes; trained bf16 parameters (adapters,
prefix) 2 + 2 (gradient) + 4 (two AdamW moments kept in the parameter's dtype) = 8 bytes; LoRA
weights, which peft keeps in fp32 over a bf16 model, 4 + 4 + 8 = 16 bytes. With fp32 weights (full
under `auto`, or any method with `model.dtype=fp32`): 4 bytes frozen, 4 + 4 + 8 = 16 trained.
Activations are planning/estimate.py's business.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from ptpeft_cli.config import MethodConfig, conf_dir
from ptpeft_cli.errors import UserError
from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.base import weights_dtype
from ptpeft_cli.methods.prefix import build_prefix, check_prefix_mode, prefix_meta
from ptpeft_cli.models import get_family
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.hf import resolve_dtype

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
LORA_BYTES = 16  # fp32 weight, gradient and two AdamW moments, whatever the model's dtype


@dataclass(frozen=True)
class Footprint:
    """What one method stage trains on one model."""

    total: int  # parameters, tied weights once
    trainable: int
    lora: int  # of which LoRA weights (fp32 under peft)
    static_bytes: int  # weights + gradients + AdamW state
    lora_inputs: int  # in_features summed over every LoRA-wrapped Linear (what LoRA keeps per token)
    weight_bytes: int = 2  # of the model's own weights (2: bf16, 4: fp32)

    @property
    def gradient_bytes(self) -> int:
        """One gradient per trained parameter, in its dtype (LoRA: fp32)."""
        return self.weight_bytes * (self.trainable - self.lora) + 4 * self.lora


def method_config(name: str, overrides: dict[str, Any]) -> MethodConfig:
    """The shipped defaults of conf/method/<name>.yaml (pt_adapter extends pt_peft)."""
    cfg = OmegaConf.structured(MethodConfig)
    files = ["pt_peft", "pt_adapter"] if name == "pt_adapter" else [name]
    for file in files:
        values = OmegaConf.load(conf_dir() / "method" / f"{file}.yaml")
        values.pop("defaults", None)
        cfg = OmegaConf.merge(cfg, values)
    return OmegaConf.to_object(OmegaConf.merge(cfg, overrides))


def gpu_weight_bytes(family_name: str, model_dtype: str, method_name: str) -> int:
    """Bytes per weight of the model's own weights on a GPU: `model.dtype` as `method_name` trains
    (`weights_dtype`: full makes `auto` fp32), `auto` otherwise the family's GPU dtype."""
    dtype = weights_dtype(model_dtype, get_method(method_name))
    return (get_family(family_name).gpu_dtype if dtype == "auto" else resolve_dtype(dtype)).itemsize


def footprint(family_name: str, base: nn.Module, cfg: Any, stage: int | None = None,
              weight_bytes: int | None = None) -> Footprint:
    """What `cfg` trains on `base` in `stage` (None: the method's last stage; PT-PEFT's stage 0 is
    its prefix alone), with weights of `weight_bytes` (2: bf16, 4: fp32; None: what
    `model.dtype=auto` loads on a GPU for this method). A method that refuses this
    model raises its UserError. Only methods that add modules (LoRA, adapters) work on a copy of
    `base`; the others are counted without changing it."""
    family = get_family(family_name)
    if weight_bytes is None:
        weight_bytes = gpu_weight_bytes(family_name, "auto", cfg.name)
    family.configure(base)  # the generic family reads its LoRA targets from the model
    kind = "prefix" if cfg.name == "pt_peft" and stage == 0 else cfg.name
    prefix_params = 0
    if kind in ("prefix", "pt_peft"):  # built, not initialised (that would run the model)
        loaded = LoadedModel(model=base, processor=None, family=family)
        check_prefix_mode(loaded, cfg.prefix.mode)
        prefix_params = sum(p.numel() for p in build_prefix(loaded, prefix_meta(loaded, cfg)).parameters())
    if kind in ("full", "prefix", "none"):  # FullMethod's rule; its tied-weight dedup reads storage, absent on meta
        named = list(base.named_parameters())
        trained = sum(p.numel() for n, p in named if kind == "full" and family.full_trainable(n, bool(cfg.train_vision)))
        frozen, lora, lora_inputs = sum(p.numel() for _, p in named) - trained, 0, 0
    else:
        loaded = LoadedModel(model=copy.deepcopy(base), processor=None, family=family)
        get_method(cfg.stage2 if kind == "pt_peft" else kind).setup_stage(loaded, cfg, 0)
        params = {id(p): p for p in loaded.model.parameters()}  # meta tensors: compare identities
        lora = sum(p.numel() for n, p in loaded.model.named_parameters() if p.requires_grad and "lora_" in n)
        trained = sum(p.numel() for p in params.values() if p.requires_grad)
        frozen = sum(p.numel() for p in params.values() if not p.requires_grad)
        lora_inputs = sum(m.in_features for n, m in loaded.model.named_modules()
                          if isinstance(m, nn.Linear) and ".lora_A." in f"{n}.")
    other = trained - lora + prefix_params
    return Footprint(total=frozen + trained, trainable=lora + other, lora=lora,
                     static_bytes=weight_bytes * (frozen + 4 * other) + LORA_BYTES * lora,
                     lora_inputs=lora_inputs, weight_bytes=weight_bytes)


def count(family_name: str, base: nn.Module, cfg: Any) -> tuple[int, int] | None:
    """(trainable parameters, static training bytes) of `cfg`'s last stage; None if refused."""
    try:
        found = footprint(family_name, base, cfg)
    except UserError:
        return None
    return found.trainable, found.static_bytes


@cache
def method_for_label(label: str) -> tuple[str, MethodConfig]:
    """(method yaml, its shipped config) whose `method.label` is `label` (pt_lora -> pt_peft)."""
    for path in sorted((conf_dir() / "method").glob("*.yaml")):
        cfg = method_config(path.stem, {})
        if cfg.label == label:
            return path.stem, cfg
    raise UserError(f"no method has the label {label!r}")
