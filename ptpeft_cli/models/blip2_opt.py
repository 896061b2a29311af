"""`model.family=blip2_opt`: BLIP-2 with an OPT decoder (Salesforce/blip2-opt-2.7b, -6.7b).

Quirks: the processor puts `num_query_tokens` image placeholders before the (BOS-led) text, the
model scatters the Q-Former outputs into them; prompts are plain text (BLIP-2's are
"Question: ... Short answer:" and "a photo of", set per task in conf/model/blip2_opt.yaml).
The decoder stack is OPT's (`language_model.model.decoder`): positions come from the attention
mask, attention output is `out_proj`, the MLP is `fc1`/`fc2`. `full` trains the Q-Former, its
query tokens, the projection and OPT; the ViT stays frozen unless `method.train_vision=true`.
"""

from __future__ import annotations

from torch import nn
from transformers import Blip2ForConditionalGeneration

from ptpeft_cli.models.hf import HFFamily, unwrap


class Blip2OptFamily(HFFamily):
    name = "blip2_opt"
    model_class = Blip2ForConditionalGeneration
    prompt_template = "{instruction}"
    default_lora_targets = r".*language_model.*\.(q_proj|k_proj|v_proj|out_proj)"
    default_lora_mlp_targets = r".*language_model.*\.(fc1|fc2)"
    projector_path = "language_projection"
    vision_modules = ("vision_model",)

    def language_model(self, model: nn.Module) -> nn.Module:
        return unwrap(model).language_model.model.decoder

    def adapter_points(self, layer: nn.Module) -> tuple[nn.Module, nn.Module]:
        """OPT has no MLP module: the adapter follows `fc2`, before the residual add."""
        return layer.self_attn, layer.fc2
