"""`model.family=qwen2_5_vl`: Qwen2.5-VL (Qwen/Qwen2.5-VL-3B-Instruct, -7B-Instruct, -72B-Instruct).

Qwen2-VL's family with Qwen2.5-VL's class: the same tokenizer, chat template, image processor
and placeholder expansion (Qwen2_5_VLProcessor's image path is Qwen2VLProcessor's), so the
images-only processor without torchvision, the M-RoPE shift of a prefix and the trained merger
are inherited from models/qwen2_vl.py. What differs lives inside the model: a windowed ViT
(window attention, full attention in `fullatt_block_indexes`), RMSNorm and a gated MLP in its
blocks, and the merger's own `out_hidden_size`.
"""

from __future__ import annotations

from transformers import Qwen2_5_VLForConditionalGeneration

from ptpeft_cli.models.qwen2_vl import Qwen2VLFamily


class Qwen2_5_VLFamily(Qwen2VLFamily):  # noqa: N801 - transformers' own spelling of the class
    name = "qwen2_5_vl"
    model_class = Qwen2_5_VLForConditionalGeneration
