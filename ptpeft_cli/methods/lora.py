"""LoRA through peft, with target regexes checked against the model before peft sees them.

peft matches a string `target_modules` with `re.fullmatch` against full module names; a regex
that matches nothing (or matches a non-Linear module) gives an obscure error or none at all, so
we resolve it ourselves and list the Linear modules that do exist.
"""

from __future__ import annotations

import re
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from ptpeft_cli.config import MethodConfig
from ptpeft_cli.errors import UserError
from ptpeft_cli.methods.base import (
    SingleStageMethod,
    freeze_all,
    generalised_module_names,
    require_positive,
)
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.hf import drop_input_grad_hooks

LORA_SUBDIR = "lora"  # used by pt_peft; plain `lora` saves at the top of its out_dir


def lora_target_regex(loaded: LoadedModel, cfg: MethodConfig) -> str:
    """The option's regex, or the family's attention targets; plus the family's MLP targets."""
    attention = cfg.lora.target_modules or loaded.family.default_lora_targets
    if not attention:
        raise UserError(
            f"family {loaded.family.name} has no default LoRA targets: set method.lora.target_modules"
        )
    parts = [attention]
    if cfg.lora.mlp:
        if not loaded.family.default_lora_mlp_targets:
            raise UserError(
                f"family {loaded.family.name} defines no MLP LoRA targets (method.lora.mlp=true)"
            )
        parts.append(loaded.family.default_lora_mlp_targets)
    return "|".join(f"(?:{part})" for part in parts)


def matching_linears(model: nn.Module, regex: str) -> list[str]:
    """Names of the Linear modules that `regex` fully matches (peft's rule), or UserError."""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise UserError(
            f"method.lora.target_modules is not a valid regex ({exc}): {regex!r}"
        ) from exc
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    matched = [name for name in linears if pattern.fullmatch(name)]
    if not matched:
        allowed = ", ".join(generalised_module_names(linears))
        raise UserError(
            f"LoRA target regex {regex!r} (method.lora.target_modules) matches no Linear module; "
            f"Linear modules in this model: {allowed}"
        )
    return matched


def validate_lora(cfg: MethodConfig) -> None:
    require_positive(cfg.lora.r, "method.lora.r")
    if not cfg.lora.alpha or cfg.lora.alpha <= 0:
        raise UserError(f"method.lora.alpha must be > 0, got {cfg.lora.alpha!r}")
    if not 0.0 <= float(cfg.lora.dropout) < 1.0:
        raise UserError(f"method.lora.dropout must be in [0, 1), got {cfg.lora.dropout!r}")


def apply_lora(loaded: LoadedModel, cfg: MethodConfig) -> None:
    """Wrap `loaded.model` in a peft LoRA model. peft freezes everything but `lora_` weights."""
    validate_lora(cfg)
    regex = lora_target_regex(loaded, cfg)
    matching_linears(loaded.model, regex)
    lora_cfg = LoraConfig(
        r=int(cfg.lora.r),
        lora_alpha=cfg.lora.alpha,
        lora_dropout=float(cfg.lora.dropout),
        target_modules=regex,
        bias="none",
    )
    loaded.model = get_peft_model(loaded.model, lora_cfg)
    drop_input_grad_hooks(loaded.model)  # peft re-adds them on a checkpointed model; not needed (models/hf.py)


def save_lora(loaded: LoadedModel, out_dir: Path) -> None:
    """peft's own format, so `PeftModel.from_pretrained(base, out_dir)` works without ptpeft."""
    if not isinstance(loaded.model, PeftModel):
        raise ValueError("no LoRA to save: setup_stage/load was not called with LoRA")
    loaded.model.save_pretrained(str(out_dir))


def set_lora_trainable(model: nn.Module, trainable: bool) -> None:
    """peft's LoRA weights are the parameters named `lora_*`; a model loaded for inference has
    them frozen, so resuming training re-enables them here."""
    for name, param in model.named_parameters():
        if ".lora_" in name:
            param.requires_grad_(trainable)


def load_lora(loaded: LoadedModel, weights_dir: Path, trainable: bool = False) -> None:
    if not (Path(weights_dir) / "adapter_config.json").is_file():
        raise UserError(f"no LoRA weights (adapter_config.json) in {weights_dir}")
    loaded.model = PeftModel.from_pretrained(loaded.model, str(weights_dir), is_trainable=trainable)


class LoraMethod(SingleStageMethod):
    name = "lora"

    def validate(self, cfg: MethodConfig) -> None:
        super().validate(cfg)
        validate_lora(cfg)

    def apply(self, loaded: LoadedModel, cfg: MethodConfig) -> None:
        if not isinstance(loaded.model, PeftModel):
            apply_lora(loaded, cfg)
        freeze_all(loaded.model)
        set_lora_trainable(loaded.model, True)

    def save(self, loaded: LoadedModel, out_dir: Path) -> None:
        save_lora(loaded, Path(out_dir))

    def load(self, loaded: LoadedModel, cfg: MethodConfig, weights_dir: Path) -> None:
        load_lora(loaded, Path(weights_dir))
