"""Batches for training and generation: images decoded lazily here, tokenised by the family."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

EncodeFn = Callable[[list[Any], list[str], "list[str] | None"], dict[str, torch.Tensor]]
PromptFn = Callable[["str | None"], str]


class TeacherForcingCollator:
    """(image, question, target) rows -> model inputs with labels on the target tokens only."""

    def __init__(self, encode: EncodeFn, prompt: PromptFn) -> None:
        self.encode, self.prompt = encode, prompt

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        images = [row["image"].convert("RGB") for row in rows]
        prompts = [self.prompt(row["question"]) for row in rows]
        return self.encode(images, prompts, [row["target"] for row in rows])


class GenerationCollator:
    """(example_id, image, question) rows -> left-padded prompts plus the ids to key outputs by."""

    def __init__(self, encode: EncodeFn, prompt: PromptFn) -> None:
        self.encode, self.prompt = encode, prompt

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        images = [row["image"].convert("RGB") for row in rows]
        batch = self.encode(images, [self.prompt(row["question"]) for row in rows], None)
        batch["example_id"] = [int(row["example_id"]) for row in rows]
        return batch
