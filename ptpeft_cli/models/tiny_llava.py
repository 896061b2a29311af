"""`model.family=tiny_llava`: the embedded tiny LLaVA (and the base for real LLaVA families).

Family knowledge lives in class attributes (prompt templates, LoRA regexes, where the language
model sits) so a real-checkpoint family such as LLaVA-1.5 subclasses this with a few lines.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoProcessor, LlavaForConditionalGeneration

from ptpeft_cli.errors import UserError
from ptpeft_cli.models.base import LoadedModel, ModelFamily, load_checkpoint

IGNORE_INDEX = -100
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def shipped_checkpoint_dir(family: str = "tiny_llava") -> Path:
    """Where the package ships the pre-trained checkpoint of an embedded family."""
    return Path(str(resources.files("ptpeft_cli.models") / "checkpoints" / family))


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare transformers model under a peft wrapper (methods may wrap it)."""
    while hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def pad_sequences(sequences: list[list[int]], value: int, left: bool) -> torch.Tensor:
    """Pad int sequences to the longest; `left` for generation batches."""
    width = max(len(seq) for seq in sequences)
    rows = [([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s)))
            for s in sequences]
    return torch.tensor(rows, dtype=torch.long)


class TinyLlavaFamily(ModelFamily):
    """LlavaForConditionalGeneration with a word-level tokenizer and plain text prompts."""

    name = "tiny_llava"
    default_lora_targets = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
    default_lora_mlp_targets = r".*language_model.*\.(gate_proj|up_proj|down_proj)"
    # Plain text around the task's instruction (the tiny model has no chat template).
    prompt_template = "<image> {instruction}"
    # The tiny tokenizer adds no BOS itself; real Llama tokenizers do (set False there).
    prepend_bos = True
    # Separator between prompt and target when they are tokenised apart.
    target_separator = " "

    # --- loading -------------------------------------------------------------------------
    def default_checkpoint(self) -> Path:
        return shipped_checkpoint_dir(self.name)

    def load(self, model_cfg: Any) -> LoadedModel:
        path = getattr(model_cfg, "name_or_path", None) or self.default_checkpoint()
        if not Path(path).exists() and getattr(model_cfg, "name_or_path", None) is None:
            raise UserError(
                f"no shipped {self.name} checkpoint at {path}; build it with `ptpeft pretrain`"
            )
        dtype_name = str(getattr(model_cfg, "dtype", "auto"))
        dtype = _DTYPES.get(dtype_name, torch.float32)
        model = load_checkpoint(lambda: LlavaForConditionalGeneration.from_pretrained(str(path), dtype=dtype), path)
        processor = load_checkpoint(lambda: AutoProcessor.from_pretrained(str(path)), path)
        model.eval()
        max_length = int(getattr(model_cfg, "max_length", 64))
        return LoadedModel(model=model, processor=processor, family=self,
                           extras={"max_length": max_length, "path": str(path)})

    # --- text ----------------------------------------------------------------------------
    def prompt(self, instruction: str) -> str:
        return self.prompt_template.format(instruction=instruction)

    def encode(
        self,
        loaded: LoadedModel,
        images: list[Any],
        prompts: list[str],
        targets: list[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Prompt and target are tokenised apart (LLaVA-training style) so the label mask is
        exact; the processor expands each `<image>` into its patch placeholders."""
        processor = loaded.processor
        tokenizer = processor.tokenizer
        texts = [(tokenizer.bos_token if self.prepend_bos else "") + p for p in prompts]
        tokenizer.padding_side = "right"
        batch = processor(images=images, text=texts, padding=True, return_tensors="pt")
        prompt_ids = [row[mask.bool()].tolist()
                      for row, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)]
        pad_id = tokenizer.pad_token_id
        out: dict[str, torch.Tensor] = {"pixel_values": batch["pixel_values"]}
        if targets is None:
            out["input_ids"] = pad_sequences(prompt_ids, pad_id, left=True)
            out["attention_mask"] = pad_sequences([[1] * len(s) for s in prompt_ids], 0, left=True)
            return out
        max_length = int(loaded.extras.get("max_length", 64))
        sequences, labels = [], []
        for ids, target in zip(prompt_ids, targets, strict=True):
            target_ids = tokenizer(self.target_separator + target, add_special_tokens=False)[
                "input_ids"
            ][: max(1, max_length - 1)] + [tokenizer.eos_token_id]
            sequences.append(ids + target_ids)
            labels.append([IGNORE_INDEX] * len(ids) + target_ids)
        out["input_ids"] = pad_sequences(sequences, pad_id, left=False)
        out["attention_mask"] = pad_sequences([[1] * len(s) for s in sequences], 0, left=False)
        out["labels"] = pad_sequences(labels, IGNORE_INDEX, left=False)
        return out

    def decode(self, loaded: LoadedModel, token_ids: torch.Tensor) -> list[str]:
        texts = loaded.processor.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]

    @torch.no_grad()
    def generate(
        self,
        loaded: LoadedModel,
        batch: dict[str, torch.Tensor],
        max_new_tokens: int = 24,
        num_beams: int = 1,
    ) -> list[str]:
        """Greedy (num_beams=1) or beam search on a left-padded `encode(...)` batch."""
        model = loaded.model
        device = next(model.parameters()).device
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        tokenizer = loaded.processor.tokenizer
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return self.decode(loaded, new_tokens.cpu())

    # --- structure -----------------------------------------------------------------------
    def language_model(self, model: nn.Module) -> nn.Module:
        return _unwrap(model).model.language_model

    def projector(self, model: nn.Module) -> nn.Module:
        """The vision-to-language projector (representation analysis can include it)."""
        return _unwrap(model).model.multi_modal_projector

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return self.language_model(model).layers

    def adapter_points(self, layer: nn.Module) -> tuple[nn.Module, nn.Module]:
        return layer.self_attn, layer.mlp

    def full_trainable(self, name: str, train_vision: bool) -> bool:
        """Language model, lm_head and projector always; the vision tower only on request."""
        if "vision_tower" in name:
            return train_vision
        return True
