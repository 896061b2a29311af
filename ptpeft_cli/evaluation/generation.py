"""Batched generation over an eval split: the only place predictions are produced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

GenerateFn = Callable[[dict[str, torch.Tensor]], list[str]]


@torch.no_grad()
def generate_predictions(loader: DataLoader, generate: GenerateFn, device: torch.device,
                         autocast: Callable[[], Any]) -> dict[int, str]:
    """example_id -> generated text. `generate` is the family's (it knows how its model returns
    new tokens and how to clean them)."""
    predictions: dict[int, str] = {}
    for batch in tqdm(loader, desc="generate", leave=False):
        ids = batch.pop("example_id")
        inputs = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
        with autocast():
            texts = generate(inputs)
        predictions.update(zip(ids, texts, strict=True))
    return predictions


def predict(loaded: Any, loader: DataLoader, max_new_tokens: int, num_beams: int, device: torch.device,
            autocast: Callable[[], Any]) -> dict[int, str]:
    """Predictions of a loaded model (family + method applied) over an eval loader."""
    def generate(inputs: dict[str, torch.Tensor]) -> list[str]:
        return loaded.family.generate(loaded, inputs, max_new_tokens=max_new_tokens, num_beams=num_beams)

    return generate_predictions(loader, generate, device, autocast)

