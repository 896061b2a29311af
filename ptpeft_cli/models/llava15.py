"""`model.family=llava15`: LLaVA-1.5 (llava-hf/llava-1.5-7b-hf, -13b-hf) and LLaVA-layout kin.

The tiny LLaVA's layout with a real Llama tokenizer (which adds BOS itself), LLaVA-1.5's
conversation format, and bf16 on GPU. The chat format is written out rather than read from the
processor so a checkpoint without `chat_template.json` still gets the format it was trained on.
"""

from __future__ import annotations

import torch

from ptpeft_cli.models.hf import HFFamily
from ptpeft_cli.models.tiny_llava import TinyLlavaFamily


class Llava15Family(TinyLlavaFamily):
    name = "llava15"
    # "USER: <image>\n<prompt> ASSISTANT:" — the llava-hf chat template, one user turn.
    prompt_template = "USER: <image>\n{instruction} ASSISTANT:"
    prepend_bos = False
    gpu_dtype = torch.bfloat16
    checkpoint = HFFamily.checkpoint  # no shipped default: model.name_or_path is required
