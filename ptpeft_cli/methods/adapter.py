"""Houlsby bottleneck adapters after the attention and after the MLP of each LM decoder layer.

peft has no bottleneck adapter and the `adapters` package pins transformers 4.57, so this is
hand-written: a forward hook on each of `family.adapter_points(layer)` maps the module's output
h -> h + up(act(down(h))) before the decoder layer adds its residual (Houlsby et al., 2019).
The adapter is registered as a child of the module it follows (`<module>.ptpeft_adapter`), so it
moves with the model, shows up in `parameters()`, and hooks survive `copy.deepcopy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.activations import ACT2FN

from ptpeft_cli.config import MethodConfig
from ptpeft_cli.errors import UserError
from ptpeft_cli.methods.base import (
    SingleStageMethod,
    freeze_all,
    load_into,
    load_tensors,
    require_positive,
    save_tensors,
)
from ptpeft_cli.models.base import LoadedModel

ADAPTER_ATTR = "ptpeft_adapter"
WEIGHTS_FILE = "adapter.safetensors"
ACTIVATIONS = ("gelu", "relu", "silu", "tanh", "gelu_new", "quick_gelu")


class BottleneckAdapter(nn.Module):
    """down -> activation -> up, added to its input. `up` starts at zero: identity at start."""

    def __init__(self, hidden: int, bottleneck: int, activation: str) -> None:
        super().__init__()
        self.activation = activation  # the config name, saved with the weights
        self.down = nn.Linear(hidden, bottleneck)
        self.act = ACT2FN[activation]
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.act(self.down(hidden)))

    def hook(self, module: nn.Module, args: Any, output: Any) -> Any:
        """Forward hook for the module this adapter follows; tuple outputs carry h first."""
        if isinstance(output, tuple):
            return (self(output[0]), *output[1:])
        return self(output)


def validate_adapter(cfg: MethodConfig) -> None:
    require_positive(cfg.adapter.bottleneck, "method.adapter.bottleneck")
    if cfg.adapter.activation not in ACTIVATIONS:
        raise UserError(
            f"method.adapter.activation={cfg.adapter.activation!r}; allowed: {', '.join(ACTIVATIONS)}"
        )


def adapters(model: nn.Module) -> list[BottleneckAdapter]:
    return [module for module in model.modules() if isinstance(module, BottleneckAdapter)]


def attach_adapters(
    loaded: LoadedModel, bottleneck: int, activation: str
) -> list[BottleneckAdapter]:
    """Insert (once) an adapter after each adapter point of every decoder layer."""
    existing = adapters(loaded.model)
    if existing:
        return existing
    family, model = loaded.family, loaded.model
    hidden = family.hidden_size(model)
    reference = next(family.language_model(model).parameters())
    attached = []
    for layer in family.decoder_layers(model):
        for point in family.adapter_points(layer):
            adapter = BottleneckAdapter(hidden, bottleneck, activation).to(
                reference.device, reference.dtype
            )
            point.add_module(ADAPTER_ATTR, adapter)
            point.register_forward_hook(adapter.hook)
            attached.append(adapter)
    return attached


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter weights keyed `<index>.<param>` in insertion order (independent of any wrapper)."""
    return {
        f"{index}.{name}": param.detach().contiguous().cpu()
        for index, adapter in enumerate(adapters(model))
        for name, param in adapter.named_parameters()
    }


def save_adapters(loaded: LoadedModel, out_dir: Path) -> None:
    found = adapters(loaded.model)
    if not found:
        raise ValueError("no adapters to save: setup_stage/load was not called with adapters")
    first = found[0]
    meta = {
        "bottleneck": first.down.out_features,
        "activation": first.activation,
        "count": len(found),
    }
    save_tensors(adapter_state(loaded.model), Path(out_dir) / WEIGHTS_FILE, meta)


def load_adapters(loaded: LoadedModel, weights_dir: Path) -> list[BottleneckAdapter]:
    tensors, meta = load_tensors(Path(weights_dir) / WEIGHTS_FILE)
    attached = attach_adapters(loaded, int(meta["bottleneck"]), str(meta["activation"]))
    if len(attached) != int(meta["count"]):
        raise UserError(
            f"{weights_dir}: {meta['count']} adapters saved, this model takes {len(attached)}"
        )
    container = nn.ModuleDict({str(index): adapter for index, adapter in enumerate(attached)})
    load_into(container, tensors, "method=adapter")
    return attached


def set_adapters_trainable(model: nn.Module, trainable: bool) -> None:
    for adapter in adapters(model):
        adapter.requires_grad_(trainable)


class AdapterMethod(SingleStageMethod):
    name = "adapter"

    def validate(self, cfg: MethodConfig) -> None:
        super().validate(cfg)
        validate_adapter(cfg)

    def apply(self, loaded: LoadedModel, cfg: MethodConfig) -> None:
        freeze_all(loaded.model)
        attach_adapters(loaded, int(cfg.adapter.bottleneck), str(cfg.adapter.activation))
        set_adapters_trainable(loaded.model, True)

    def save(self, loaded: LoadedModel, out_dir: Path) -> None:
        save_adapters(loaded, Path(out_dir))

    def load(self, loaded: LoadedModel, cfg: MethodConfig, weights_dir: Path) -> None:
        load_adapters(loaded, Path(weights_dir))
        freeze_all(loaded.model)  # loaded for evaluation; setup_stage re-enables training
