"""`model.family=tiny_llava`: the embedded tiny LLaVA, shipped pre-trained in the package.

A LLaVA-layout `HFFamily` (see hf.py for tokenising, label masking and generation) with a
word-level tokenizer that adds no BOS, plain-text prompts, fp32 everywhere (2.4M parameters
gain nothing from bf16) and the shipped checkpoint as its default `model.name_or_path`. It
implements `image_inputs`, so its pixels are processed once and cached (data/image_cache.py).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import torch
from transformers import LlavaForConditionalGeneration

from ptpeft_cli.errors import UserError
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.hf import HFFamily
from ptpeft_cli.models.hf_text import IGNORE_INDEX, pad_sequences

__all__ = ["IGNORE_INDEX", "TinyLlavaFamily", "pad_sequences", "shipped_checkpoint_dir"]


def shipped_checkpoint_dir(family: str = "tiny_llava") -> Path:
    """Where the package ships the pre-trained checkpoint of an embedded family."""
    return Path(str(resources.files("ptpeft_cli.models") / "checkpoints" / family))


class TinyLlavaFamily(HFFamily):
    """LlavaForConditionalGeneration with a word-level tokenizer and plain text prompts."""

    name = "tiny_llava"
    model_class = LlavaForConditionalGeneration
    default_lora_targets = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
    default_lora_mlp_targets = r".*language_model.*\.(gate_proj|up_proj|down_proj)"
    projector_path = "model.multi_modal_projector"
    # Plain text around the task's instruction (the tiny model has no chat template).
    prompt_template = "<image> {instruction}"
    prepend_bos = True  # the word-level tokenizer adds no BOS itself
    gpu_dtype = torch.float32

    def image_inputs(self, loaded: LoadedModel, images: list[Any]) -> dict[str, torch.Tensor]:
        """`pixel_values`, one row per image, exactly as `processor(images=...)` makes them (the
        CLIP processor treats each image alone), so they can be processed once and cached."""
        pixels = loaded.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels}

    def default_checkpoint(self) -> Path:
        return shipped_checkpoint_dir(self.name)

    def checkpoint(self, model_cfg: Any) -> str:
        path = getattr(model_cfg, "name_or_path", None)
        if path:
            return str(path)
        shipped = self.default_checkpoint()
        if not shipped.exists():
            raise UserError(
                f"no shipped {self.name} checkpoint at {shipped}; build it with `ptpeft pretrain`"
            )
        return str(shipped)
