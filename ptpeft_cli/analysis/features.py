"""Collect the representation matrix: hidden states at text-token positions, teacher-forced.

Forward hooks read the hidden states where the family says they live, so the same code serves
every family and every method (a prefix method may add positions, a LoRA/adapter method wraps
modules; neither changes what is read). Rows are stacked in batch order and then sampled with a
seeded generator, so a tuned model and its pretrained base, fed the same batches, are measured on
exactly the same token positions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ptpeft_cli.errors import UserError
from ptpeft_cli.models.base import ModelFamily

FINAL_NORM = "final_norm"
PROJECTOR = "projector"


def sample_rows(n_available: int, max_rows: int, seed: int) -> Tensor:
    """Indices (ascending) of at most `max_rows` of `n_available` rows, a pure function of its
    arguments: all rows when they fit, otherwise a seeded random subset kept in original order."""
    if n_available < 0:
        raise ValueError(f"n_available must be >= 0, got {n_available}")
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if n_available <= max_rows:
        return torch.arange(n_available, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(n_available, generator=generator)[:max_rows]
    return torch.sort(chosen).values


def _layer_index(entry: Any, n_layers: int) -> int:
    """One `analysis.layers` entry -> a layer index: negative ints count from the end, floats
    in [0, 1) are a relative depth (0.5 = middle layer)."""
    if isinstance(entry, bool) or not isinstance(entry, (int, float)):
        raise UserError(
            f"analysis.layers entry {entry!r} is not a layer index (int) or relative depth "
            "(float in [0, 1))"
        )
    if isinstance(entry, float) and not entry.is_integer():
        if not 0.0 <= entry < 1.0:
            raise UserError(f"analysis.layers entry {entry} must be an int or a float in [0, 1)")
        return min(int(entry * n_layers), n_layers - 1)
    index = int(entry)
    resolved = index + n_layers if index < 0 else index
    if not 0 <= resolved < n_layers:
        raise UserError(
            f"analysis.layers entry {entry} is out of range for a model with {n_layers} "
            f"decoder layers (allowed: {-n_layers}..{n_layers - 1} or a float in [0, 1))"
        )
    return resolved


def default_layers(
    family: ModelFamily, model: nn.Module, spec: Sequence[Any]
) -> dict[str, nn.Module]:
    """Modules to hook for `analysis.layers`: always `final_norm` (the decoder stack, whose
    output is after the final norm), then each requested decoder layer's output, named
    `last_layer` for the last one and `layer_<i>` otherwise (duplicates dropped)."""
    layers = family.decoder_layers(model)
    modules: dict[str, nn.Module] = {FINAL_NORM: family.language_model(model)}
    for entry in spec:
        index = _layer_index(entry, len(layers))
        name = "last_layer" if index == len(layers) - 1 else f"layer_{index}"
        modules.setdefault(name, layers[index])
    return modules


def _hidden_state(output: Any) -> Tensor:
    """The hidden-state tensor of a module output (tensor, ModelOutput or tuple)."""
    if isinstance(output, Tensor):
        return output
    last_hidden = getattr(output, "last_hidden_state", None)
    if isinstance(last_hidden, Tensor):
        return last_hidden
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(f"cannot find a hidden-state tensor in a module output of type {type(output)}")


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _text_rows(hidden: Tensor, input_ids: Tensor, text_mask: Tensor) -> Tensor:
    """Rows of `hidden` at text positions. A prefix prepended inside the model makes `hidden`
    longer than `input_ids`; the input's own positions are always the last ones."""
    batch, length = input_ids.shape
    if hidden.ndim != 3 or hidden.shape[0] != batch or hidden.shape[1] < length:
        raise ValueError(
            f"hooked hidden state {tuple(hidden.shape)} does not cover input_ids {(batch, length)}"
        )
    own_positions = hidden[:, hidden.shape[1] - length :, :]
    return own_positions[text_mask.to(own_positions.device).bool()]


def _sampled(rows: list[Tensor], max_rows: int, seed: int) -> Tensor:
    stacked = torch.cat(rows, dim=0)
    return stacked[sample_rows(stacked.shape[0], max_rows, seed)]


@torch.inference_mode()
def collect_features(
    model: nn.Module,
    layers: dict[str, nn.Module],
    batches: Iterable[dict],
    text_mask_fn: Callable[[dict], Tensor],
    max_rows: int,
    seed: int,
    projector: nn.Module | None = None,
) -> dict[str, Tensor]:
    """Teacher-forced forward over `batches` (their tensor entries are the model's kwargs); for
    each hooked module, the text-position rows (float32, CPU), sampled to at most `max_rows`.
    With `projector`, its output rows (image-token features) are returned as `projector`."""
    if not layers:
        raise ValueError("collect_features needs at least one module to hook")
    if projector is not None and PROJECTOR in layers:
        raise ValueError(f"the layer name {PROJECTOR!r} is reserved for the projector output")
    captured: dict[str, Tensor] = {}

    def capture(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            captured[name] = _hidden_state(output)

        return hook

    hooked = dict(layers)
    if projector is not None:
        hooked[PROJECTOR] = projector
    rows: dict[str, list[Tensor]] = {name: [] for name in hooked}
    handles = [module.register_forward_hook(capture(name)) for name, module in hooked.items()]
    was_training = model.training
    device = _model_device(model)
    model.eval()
    try:
        for batch in batches:
            captured.clear()
            inputs = {k: v.to(device) for k, v in batch.items() if isinstance(v, Tensor)}
            model(**inputs)
            text_mask = text_mask_fn(batch)
            for name in hooked:
                if name not in captured:
                    raise RuntimeError(f"hooked module {name!r} was not called by the forward")
                hidden = captured[name]
                if name == PROJECTOR:
                    selected = hidden.reshape(-1, hidden.shape[-1])
                else:
                    selected = _text_rows(hidden, batch["input_ids"], text_mask)
                rows[name].append(selected.detach().to(device="cpu", dtype=torch.float32))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not rows[next(iter(hooked))]:
        raise ValueError("collect_features got no batches")
    return {name: _sampled(parts, max_rows, seed) for name, parts in rows.items()}
