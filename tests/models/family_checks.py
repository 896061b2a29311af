"""Batches and checks shared by the family tests: the generate-vs-teacher-forced comparison
(family-aware: GIT's image positions, BLIP's dropped [SEP], who takes position ids) and a few
optimizer steps."""

from __future__ import annotations

from typing import Any

import torch
from tiny_tokenizers import CAPTION, QUESTIONS, TARGETS, images


def family_prompts(family: Any) -> list[str]:
    """A caption prompt and a (longer) question prompt: rows of different lengths."""
    return [family.prompt(CAPTION), family.prompt(QUESTIONS[0])]


def train_batch(loaded: Any) -> dict[str, torch.Tensor]:
    return loaded.family.encode(loaded, images(2), family_prompts(loaded.family), TARGETS)


def generation_batch(loaded: Any) -> dict[str, torch.Tensor]:
    """Prompts of different lengths, so the first row is left-padded."""
    family = loaded.family
    return family.encode(
        loaded, images(2), [family.prompt(QUESTIONS[1]), family.prompt(QUESTIONS[0])]
    )


def _teacher_forced(loaded: Any, batch: dict[str, torch.Tensor], new: torch.Tensor) -> torch.Tensor:
    """Logits a plain forward gives at the positions that predicted `new`. Positions follow
    generate's rule (cumsum of the mask) where the forward takes them (PaliGemma's count from 1);
    Qwen2-VL / Qwen2.5-VL and OPT derive them from the mask themselves. BLIP's generate dropped
    the prompt's last token ([SEP]). Per-token extras grow by 0 over the new tokens, PaliGemma's
    `token_type_ids` by 1 (generated tokens are its causal suffix); InstructBLIP's Q-Former
    inputs are per image."""
    model, name = loaded.model, loaded.family.name
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if name == "blip":
        ids, mask = ids[:, :-1], mask[:, :-1]
    full_ids = torch.cat([ids, new], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(new)], dim=1)
    positions = (full_mask.cumsum(-1) - 1).masked_fill(full_mask == 0, 0)
    per_image = ("qformer_input_ids", "qformer_attention_mask")
    extras = {
        k: (
            torch.cat([v, torch.full_like(new, int(k == "token_type_ids"))], dim=1)
            if v.shape == batch["input_ids"].shape and k not in per_image
            else v
        )
        for k, v in batch.items()
        if k not in ("input_ids", "attention_mask")
    }
    if name == "blip":  # its forward takes no positions: run the decoder on the ViT states
        vision = model.vision_model(pixel_values=extras["pixel_values"]).last_hidden_state
        logits = model.text_decoder(
            input_ids=full_ids,
            attention_mask=full_mask,
            position_ids=positions,
            encoder_hidden_states=vision,
        ).logits
    else:
        if name not in ("qwen2_vl", "qwen2_5_vl", "blip2_opt"):
            extras["position_ids"] = positions + int(name == "paligemma")
        logits = model(input_ids=full_ids, attention_mask=full_mask, **extras).logits
    start = logits.shape[1] - full_ids.shape[1] + ids.shape[1] - 1  # GIT: image positions first
    return logits[:, start : start + new.shape[1]]


@torch.no_grad()
def greedy_vs_teacher_forced(
    loaded: Any, batch: dict[str, torch.Tensor], steps: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy `generate` step logits and the teacher-forced logits over the same tokens.
    Special tokens are suppressed so every step is a text token (no early stop, no image ids)."""
    tokenizer = loaded.processor.tokenizer
    out = loaded.model.generate(
        **{k: v.clone() for k, v in batch.items()},
        max_new_tokens=steps,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
        suppress_tokens=sorted(tokenizer.added_tokens_decoder),
        **loaded.family.generation_kwargs(loaded),
    )
    new = out.sequences[:, -steps:]
    return torch.stack(out.logits, dim=1), _teacher_forced(loaded, batch, new)
