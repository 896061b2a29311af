"""Batches for training and generation, tokenised by the family.

Rows either carry `image` (decoded here, per batch) or `image_index` into an `ImageStore` of
images processed once (data/image_cache.py); then the batch's tensors are gathered in one take."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ptpeft_cli.data.image_cache import IMAGE_INDEX, ImageStore

# (PIL images or None, prompts, targets or None, cached image tensors or None) -> model inputs
EncodeFn = Callable[["list[Any] | None", list[str], "list[str] | None", "dict[str, torch.Tensor] | None"],
                    dict[str, torch.Tensor]]
PromptFn = Callable[["str | None"], str]


def batch_images(rows: list[dict[str, Any]], store: ImageStore | None
                 ) -> tuple[list[Any] | None, dict[str, torch.Tensor] | None]:
    """(PIL images, None) for rows holding images; (None, stacked tensors) for cached rows."""
    if store is not None and rows and IMAGE_INDEX in rows[0]:
        return None, store.gather([row[IMAGE_INDEX] for row in rows])
    return [row["image"].convert("RGB") for row in rows], None


class TeacherForcingCollator:
    """(image, question, target) rows -> model inputs with labels on the target tokens only."""

    def __init__(self, encode: EncodeFn, prompt: PromptFn, images: ImageStore | None = None) -> None:
        self.encode, self.prompt, self.images = encode, prompt, images

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        images, image_inputs = batch_images(rows, self.images)
        prompts = [self.prompt(row["question"]) for row in rows]
        return self.encode(images, prompts, [row["target"] for row in rows], image_inputs)


class GenerationCollator:
    """(example_id, image, question) rows -> left-padded prompts plus the ids to key outputs by."""

    def __init__(self, encode: EncodeFn, prompt: PromptFn, images: ImageStore | None = None) -> None:
        self.encode, self.prompt, self.images = encode, prompt, images

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        images, image_inputs = batch_images(rows, self.images)
        batch = self.encode(images, [self.prompt(row["question"]) for row in rows], None, image_inputs)
        batch["example_id"] = [int(row["example_id"]) for row in rows]
        return batch
