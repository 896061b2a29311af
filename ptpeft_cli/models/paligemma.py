"""`model.family=paligemma`: PaliGemma (google/paligemma-3b-pt-224, -448, -896, -mix-*).

SigLIP + Gemma as a prefix-LM: image tokens and prompt attend to each other both ways, the
target only causally. Quirks handled here:
- no chat template: prompts are plain text (PaliGemma's task prefixes `caption en` and
  `answer en {question}` in conf/model/paligemma.yaml); `encode` gives the processor one
  `<image>` per prompt and it writes the image tokens, `<bos>` and the closing "\\n" itself;
- the target is the processor's `suffix` (it appends `<eos>`), and the processor's
  `token_type_ids` (0: prefix, bidirectional; 1: suffix, causal) go to the model in training
  and in generation (whose update marks each new token 1);
- PaliGemmaModel builds the 4-D prefix-LM mask from `token_type_ids` and hands it to Gemma, so
  the prefix hooks sit on PaliGemmaModel (2-D mask, keyword-bound). An input prefix joins the
  bidirectional block (`prefix_call`: L zeros before `token_type_ids`, else the model would read
  them L positions off) and goes before embeddings whose image features are already merged in
  (the model finds image positions by token id, which an embedded prefix no longer has);
- positions count from 1 (an input prefix takes 1..L, text moves by L);
- `prefix.mode=kv` is refused: PaliGemmaModel applies the bidirectional block only on what it
  takes for a first iteration, an empty cache or `pixel_values` given; generate passes image
  features instead of pixels, so with L prefix key/values in the cache the image and prompt
  would be read causally in generation but bidirectionally in training (measured in
  tests/models/test_family_quirks.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PaliGemmaForConditionalGeneration

from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.hf import HFFamily, unwrap
from ptpeft_cli.models.hf_text import IGNORE_INDEX, pad_sequences


class PaliGemmaFamily(HFFamily):
    name = "paligemma"
    model_class = PaliGemmaForConditionalGeneration
    prompt_template = "{instruction}"
    default_lora_targets = r".*language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
    default_lora_mlp_targets = r".*language_model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)"
    projector_path = "model.multi_modal_projector"
    prefix_modes = ("input",)

    def encode(
        self,
        loaded: LoadedModel,
        images: list[Any] | None,
        prompts: list[str],
        targets: list[str] | None = None,
        image_inputs: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The processor's rows (targets as `suffix`), the suffix capped at `model.max_length`
        tokens with its `<eos>` kept; labels on the suffix; right-padded with targets, left
        without."""
        processor = loaded.processor
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "right"
        texts = [prompt if processor.image_token in prompt else processor.image_token + prompt for prompt in prompts]
        batch = processor(images=images, text=texts, suffix=targets, padding=True, return_tensors="pt")
        mask = batch["attention_mask"].bool()
        rows = {k: [r[m].tolist() for r, m in zip(batch[k], mask, strict=True)]
                for k in ("input_ids", "token_type_ids")}
        out: dict[str, Any] = {"pixel_values": batch["pixel_values"]}
        if targets is None:
            return self._pack(out, rows, tokenizer.pad_token_id, left=True)
        keep = max(1, int(loaded.extras.get("max_length", 64)) - 1)
        labels = []
        for index, (ids, types) in enumerate(zip(rows["input_ids"], rows["token_type_ids"], strict=True)):
            start = types.index(1)
            suffix = ids[start:] if len(ids) - start <= keep + 1 else [*ids[start : start + keep], ids[-1]]
            rows["input_ids"][index] = ids[:start] + suffix
            rows["token_type_ids"][index] = types[:start] + [1] * len(suffix)
            labels.append([IGNORE_INDEX] * start + suffix)
        out["labels"] = pad_sequences(labels, IGNORE_INDEX, left=False)
        return self._pack(out, rows, tokenizer.pad_token_id, left=False)

    # --- structure -----------------------------------------------------------------------
    def language_model(self, model: nn.Module) -> nn.Module:
        """PaliGemmaModel: it takes the 2-D mask and `token_type_ids` (Gemma gets a 4-D mask)."""
        return unwrap(model).model

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return self.language_model(model).language_model.layers

    def prefix_call(self, stack: nn.Module, kwargs: dict[str, Any], length: int, mode: str) -> dict[str, Any]:
        """The prefix joins the bidirectional block (L zeros before `token_type_ids`); the
        embeddings it is put before already hold the image features."""
        types = kwargs.get("token_type_ids")
        if types is not None:
            kwargs["token_type_ids"] = torch.cat([types.new_zeros(types.shape[0], length), types], dim=1)
        if kwargs.get("inputs_embeds") is None:
            encoded = (kwargs.pop("mm_encoder_outputs", None) or {}).get("image")  # generate's
            if encoded is None and kwargs.get("pixel_values") is not None:
                encoded = stack.get_image_features(kwargs["pixel_values"])
            kwargs["pixel_values"] = None
            kwargs["inputs_embeds"] = self.merged_embeddings(stack, kwargs["input_ids"], encoded)
            kwargs["input_ids"] = None
        return kwargs

    @staticmethod
    def merged_embeddings(stack: nn.Module, ids: torch.Tensor, encoded: Any) -> torch.Tensor:
        """Token embeddings with the projected image features (`get_image_features`'s
        `pooler_output`) at the image tokens, as PaliGemmaModel.forward merges them (an image
        id beyond the vocabulary embeds as 0)."""
        image_id = stack.config.image_token_id
        image = ids == image_id
        embeds = stack.get_input_embeddings()(ids.masked_fill(image, 0) if image_id >= stack.vocab_size else ids)
        if encoded is None:
            return embeds
        features = encoded.pooler_output.to(embeds.device, embeds.dtype)
        return embeds.masked_scatter(image.unsqueeze(-1).expand_as(embeds), features)
