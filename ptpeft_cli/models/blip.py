"""`model.family=blip`: BLIP captioning (Salesforce/blip-image-captioning-base, -large).

A ViT and a BERT decoder that cross-attends to it. Quirks handled here (shared with GIT: a BERT
tokenizer called directly, adapters after the output projections):
- the decoder's BOS is [DEC] (`text_config.bos_token_id`), its EOS is [SEP];
- `BlipForConditionalGeneration.generate` drops the last prompt token (it expects the
  processor's trailing [SEP]) and overwrites the first with BOS: generation prompts are built
  as [DEC] prompt [SEP], left-padded, so what it drops is the [SEP] in every row; it returns
  the prompt without that token plus the new tokens;
- the kv prefix needs a self-attention-only cache: a plain cache would also receive the
  cross-attention's image keys (`prefix_cache` below).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import BlipForConditionalGeneration, DynamicCache, EncoderDecoderCache

from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.git import GitFamily
from ptpeft_cli.models.hf import unwrap


class BlipFamily(GitFamily):
    name = "blip"
    model_class = BlipForConditionalGeneration
    default_lora_targets = (
        r".*text_decoder\.bert\.encoder\.layer\.\d+\.attention\."
        r"(self\.(query|key|value)|output\.dense)"
    )
    default_lora_mlp_targets = (
        r".*text_decoder\.bert\.encoder\.layer\.\d+\.(intermediate\.dense|output\.dense)"
    )
    projector_path = None  # the decoder cross-attends to the ViT's states directly
    vision_modules = ("vision_model",)
    prefix_modes = ("input", "kv")  # BLIP's causal mask has no image block: kv works here

    def start_id(self, tokenizer: Any) -> int:
        return int(tokenizer.bos_token_id)

    def generation_suffix(self, tokenizer: Any) -> list[int]:
        return [int(tokenizer.sep_token_id)]

    def generation_kwargs(self, loaded: LoadedModel) -> dict[str, Any]:
        return {}  # BLIP's generate sets pad and eos ([SEP]) itself

    def new_tokens(self, output: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return output[:, inputs["input_ids"].shape[1] - 1 :]

    def language_model(self, model: nn.Module) -> nn.Module:
        return unwrap(model).text_decoder.bert

    def prefix_cache(self, stack: nn.Module) -> Any:
        return EncoderDecoderCache(
            DynamicCache(config=stack.config), DynamicCache(config=stack.config)
        )
