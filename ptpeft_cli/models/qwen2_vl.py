"""`model.family=qwen2_vl`: Qwen2-VL (Qwen/Qwen2-VL-2B-Instruct, -7B-Instruct).

Quirks handled here:
- transformers 5's `Qwen2VLProcessor` insists on a video processor, which needs torchvision; the
  processor is assembled images-only from the checkpoint's image processor (its PIL backend
  when torchvision is absent) and tokenizer, so neither torchvision nor video support is needed.
- The processor returns `image_grid_thw` (per image) and `mm_token_type_ids` (per token), which
  `encode` carries; M-RoPE positions are computed by the model from them. A prefix (either mode)
  shifts every position, text and image alike, by the prefix length, so relative positions
  inside the image grid and between image and text are those of the unprefixed model.
- The vision->text projector (`visual.merger`) lives inside the vision module: `full` trains it.
"""

from __future__ import annotations

from typing import Any

from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
)
from transformers.processing_utils import ProcessorMixin

from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.hf import HFFamily, unwrap


class Qwen2VLImageProcessor(Qwen2VLProcessor):
    """`Qwen2VLProcessor` without the video processor: same tokens, same image expansion."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


class Qwen2VLFamily(HFFamily):
    name = "qwen2_vl"
    model_class = Qwen2VLForConditionalGeneration
    default_lora_targets = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
    default_lora_mlp_targets = r".*language_model.*\.(gate_proj|up_proj|down_proj)"
    projector_path = "model.visual.merger"
    trainable_in_vision = ("merger",)
    # The Qwen2-VL-Instruct chat template (default system prompt, one image, one user turn).
    prompt_template = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>{instruction}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )

    def load_processor(self, path: str, trust_remote_code: bool) -> Any:
        image_processor = AutoImageProcessor.from_pretrained(
            path, trust_remote_code=trust_remote_code
        )
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        return Qwen2VLImageProcessor(image_processor, tokenizer)

    def image_token_ids(self, loaded: LoadedModel) -> list[int]:
        """Image pads and the vision start/end markers around them: none is a text token."""
        config = unwrap(loaded.model).config
        return [
            int(config.image_token_id),
            int(config.vision_start_token_id),
            int(config.vision_end_token_id),
        ]
