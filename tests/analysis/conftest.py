"""Fixtures: a tiny RANDOM LLaVA (real transformers classes), matching batches, and feature
matrices with known structure. Shared through fixtures, not imports, so test module names never
clash with other test folders."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

IMAGE_TOKEN = 99
IMAGE_SIZE = 64
PATCH = 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2  # strategy "default" drops CLS
PAD = 0


class TinyLlavaFamily:
    """The two family answers `default_layers` needs, for the real Llava layout."""

    def language_model(self, model: nn.Module) -> nn.Module:
        return model.model.language_model

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.language_model.layers


@pytest.fixture(scope="session")
def tiny_llava() -> LlavaForConditionalGeneration:
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            image_size=IMAGE_SIZE,
            patch_size=PATCH,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
        ),
        text_config=LlamaConfig(
            vocab_size=100,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            pad_token_id=PAD,
        ),
        image_token_index=IMAGE_TOKEN,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    return LlavaForConditionalGeneration(config).eval()


def make_batch(seed: int, text_lengths: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
    """Right-padded teacher-forcing batch: per sample (text before image, text after image)."""
    generator = torch.Generator().manual_seed(seed)
    length = max(before + IMAGE_TOKENS + after for before, after in text_lengths)
    input_ids = torch.full((len(text_lengths), length), PAD, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, (before, after) in enumerate(text_lengths):
        text = torch.randint(1, IMAGE_TOKEN, (before + after,), generator=generator)
        used = before + IMAGE_TOKENS + after
        input_ids[row, :before] = text[:before]
        input_ids[row, before : before + IMAGE_TOKENS] = IMAGE_TOKEN
        input_ids[row, before + IMAGE_TOKENS : used] = text[before:]
        attention_mask[row, :used] = 1
    pixel_values = torch.randn(len(text_lengths), 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}


def _text_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """What the family's `text_token_mask` computes: attended and not an image placeholder."""
    return batch["attention_mask"].bool() & (batch["input_ids"] != IMAGE_TOKEN)


@pytest.fixture()
def text_mask() -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    return _text_mask


@pytest.fixture()
def family() -> TinyLlavaFamily:
    return TinyLlavaFamily()


@pytest.fixture()
def image_tokens() -> int:
    return IMAGE_TOKENS


def _features(seed: int, rows: int = 300, dim: int = 24, rank: int | None = None) -> torch.Tensor:
    """Random features; with `rank`, confined to a `rank`-dimensional subspace (collapsed)."""
    generator = torch.Generator().manual_seed(seed)
    if rank is None:
        return torch.randn(rows, dim, generator=generator)
    return torch.randn(rows, rank, generator=generator) @ torch.randn(
        rank, dim, generator=generator
    )


@pytest.fixture()
def features() -> Callable[..., torch.Tensor]:
    return _features


@pytest.fixture()
def batches() -> list[dict[str, torch.Tensor]]:
    return [make_batch(1, [(3, 5), (2, 9)]), make_batch(2, [(4, 2), (1, 1), (5, 7)])]
