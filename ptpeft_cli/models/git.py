"""`model.family=git`: GIT (microsoft/git-base, git-large, -coco, -vqav2 variants).

One BERT-style transformer reads image tokens then text tokens. Quirks handled here:
- image tokens have no placeholder in `input_ids`; the model puts the projected image features
  in front of the text itself (its logits cover image + text positions);
- the BERT tokenizer's `token_type_ids` are rejected by `generate`: the tokenizer is called
  directly and they are never produced; prompts start with [CLS] (GIT's BOS), targets end with
  [SEP] (its EOS); GIT captions with an empty prompt and answers after the bare question;
- `GitForCausalLM` calls the stack with `input_ids` positionally and the stack builds a 4-D
  mask for its layers: the prefix hooks sit on `GitModel` (2-D mask, keyword-bound); an input
  prefix goes between the image tokens and the text (right before the stack's own input);
- `prefix.mode=kv` is refused: GitModel marks the image block bidirectional with ids that do
  not count cached positions, so with L prefix key/values in the cache the first image tokens
  could no longer see the last L (measured in tests/models/test_families.py).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import GitForCausalLM

from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.hf import HFFamily, unwrap


class GitFamily(HFFamily):
    name = "git"
    model_class = GitForCausalLM
    prompt_template = "{instruction}"
    default_lora_targets = (
        r".*git\.encoder\.layer\.\d+\.attention\.(self\.(query|key|value)|output\.dense)"
    )
    default_lora_mlp_targets = r".*git\.encoder\.layer\.\d+\.(intermediate\.dense|output\.dense)"
    projector_path = "git.visual_projection"
    vision_modules = ("image_encoder",)
    prefix_modes = ("input",)

    def start_id(self, tokenizer: Any) -> int:
        return int(tokenizer.cls_token_id)

    def end_id(self, tokenizer: Any) -> int:
        return int(tokenizer.sep_token_id)

    def prompt_rows(
        self, loaded: LoadedModel, images: list[Any], prompts: list[str]
    ) -> tuple[dict[str, Any], dict[str, list[list[int]]]]:
        processor = loaded.processor
        tokenizer = processor.tokenizer
        pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        return {"pixel_values": pixels}, {
            "input_ids": [[self.start_id(tokenizer), *row] for row in ids]
        }

    def language_model(self, model: nn.Module) -> nn.Module:
        return unwrap(model).git

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return self.language_model(model).encoder.layer

    def adapter_points(self, layer: nn.Module) -> tuple[nn.Module, nn.Module]:
        """BERT layers: the adapters follow the attention and FFN output projections, before
        each residual + LayerNorm (Houlsby's placement)."""
        return layer.attention.output.dense, layer.output.dense
