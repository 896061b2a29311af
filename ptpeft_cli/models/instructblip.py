"""`model.family=instructblip`: InstructBLIP with a Vicuna/Llama decoder (Salesforce/instructblip-vicuna-7b, -13b).

BLIP-2's layout (ViT -> Q-Former -> projection -> `num_query_tokens` placeholders before the
BOS-led text) with one difference: the Q-Former reads the instruction too. Quirks handled here:
- no chat template: prompts are plain text (InstructBLIP's "A short image caption:" and
  "Question: {question} Short answer:", in conf/model/instructblip.yaml);
- the processor tokenises the instruction a second time with the Q-Former's BERT tokenizer:
  `qformer_input_ids` / `qformer_attention_mask` travel with every batch, training and
  generation alike, right-padded in both (the Q-Former counts positions from 0); they are per
  image, not per token of the language model, so they never become label rows;
- the decoder is Llama (`language_model.model`): positions from the forward's own count in
  training (right-padded), from the mask in generation (left-padded), as for LLaVA;
- `full` trains what `blip2_opt`'s does (Q-Former, query tokens, projection, language model)
  and the Q-Former's instruction path (its word and position embeddings, the text FFNs) with
  it, except the last Q-Former layer's text FFN: only the query outputs leave the Q-Former, so
  it never gets a gradient (measured: it is the only trainable part that did not move);
- the Flan-T5 (encoder-decoder) variants are refused when the config is read: ptpeft's prompt +
  target rows and prefix sites are those of a decoder-only language model.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn
from transformers import AutoConfig, InstructBlipForConditionalGeneration

from ptpeft_cli.errors import UserError
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.hf import HFFamily

QFORMER_INPUTS = ("qformer_input_ids", "qformer_attention_mask")


class InstructBlipFamily(HFFamily):
    name = "instructblip"
    model_class = InstructBlipForConditionalGeneration
    prompt_template = "{instruction}"
    default_lora_targets = r".*language_model\.model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
    default_lora_mlp_targets = r".*language_model\.model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)"
    projector_path = "language_projection"
    vision_modules = ("vision_model",)

    def load_model(self, path: str, dtype: Any, trust_remote_code: bool) -> Any:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        if not getattr(config, "use_decoder_only_language_model", True):
            raise UserError(
                f"model family {self.name} supports InstructBLIP with a decoder-only language model "
                f"(Vicuna/Llama, e.g. Salesforce/instructblip-vicuna-7b); {path} has an encoder-decoder "
                f"one ({config.text_config.model_type}, Flan-T5), which is not supported"
            )
        return super().load_model(path, dtype, trust_remote_code)

    def __init__(self) -> None:
        super().__init__()
        self.dead_in_full: re.Pattern[str] | None = None  # set by configure(model)

    def configure(self, model: nn.Module) -> None:
        super().configure(model)
        last = model.config.qformer_config.num_hidden_layers - 1
        self.dead_in_full = re.compile(rf"(.*\.)?qformer\.encoder\.layer\.{last}\.(intermediate|output)\..*")

    def full_trainable(self, name: str, train_vision: bool) -> bool:
        """HFFamily's rule, less the last Q-Former layer's text FFN (no gradient reaches it)."""
        dead = self.dead_in_full is not None and self.dead_in_full.fullmatch(name) is not None
        return super().full_trainable(name, train_vision) and not dead

    def prompt_rows(
        self, loaded: LoadedModel, images: list[Any], prompts: list[str]
    ) -> tuple[dict[str, Any], dict[str, list[list[int]]]]:
        """The processor's query placeholders + BOS + prompt as rows; the Q-Former's copy of the
        instruction and the pixels per image, as the processor made them."""
        processor = loaded.processor
        processor.tokenizer.padding_side = processor.qformer_tokenizer.padding_side = "right"
        batch = processor(images=images, text=list(prompts), padding=True, return_tensors="pt")
        mask = batch["attention_mask"].bool()
        out = {key: batch[key] for key in ("pixel_values", *QFORMER_INPUTS)}
        return out, {"input_ids": [row[m].tolist() for row, m in zip(batch["input_ids"], mask, strict=True)]}
