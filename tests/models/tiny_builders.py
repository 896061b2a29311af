"""Tiny random checkpoints of every family's real transformers class, with real processors.

Each `save_<family>(directory)` writes what a hub checkpoint holds (model weights + config,
tokenizer files, image-processor config, chat template) with `save_pretrained`, so the tests
exercise `family.load(...)` exactly as a user's `model.name_or_path=<dir>` would. Tokenizers
come from tiny_tokenizers.py (trained offline in the real one's style); nothing is downloaded.
The config and weight helpers are shared with tests/methods/method_fixtures.py (in-memory
models for the method tests); tests/conftest.py puts both folders on the import path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tiny_tokenizers import (
    IMAGE_SIZE,
    bert_tokenizer,
    byte_level_tokenizer,
    gemma_tokenizer,
    llama_style_tokenizer,
)
from torch import nn
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessorPil,
    BlipProcessor,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    GitConfig,
    GitForCausalLM,
    GitProcessor,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    SiglipImageProcessorPil,
)

from ptpeft_cli.config import ModelConfig

# The ViT tower of the tiny BLIP / BLIP-2 / GIT checkpoints.
TINY_VISION = {"image_size": IMAGE_SIZE, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
               "num_hidden_layers": 2, "num_attention_heads": 4}


# The decoder of the tiny Qwen-VL and PaliGemma checkpoints (the Llama ones: llama_text_config).
TINY_DECODER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2}
# The Q-Former of the tiny BLIP-2 / InstructBLIP checkpoints (reads the ViT above).
TINY_QFORMER = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64, "encoder_hidden_size": 32}


def scale_weights(model: nn.Module, factor: float = 5.0) -> nn.Module:
    """Random init at std 0.02 gives near-uniform logits; scaled, tokens differ clearly."""
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.mul_(factor)
    return model.eval()


def llama_text_config(
    vocab: int, pad: int | None, bos: int | None, eos: int | None, kv_heads: int = 2
) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
        tie_word_embeddings=False,
    )


def tiny_clip_vision(image_size: int = IMAGE_SIZE, **overrides: Any) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        image_size=image_size,
        patch_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
        **overrides,
    )


def _save(directory: Path, model: nn.Module, *parts: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    scale_weights(model).save_pretrained(directory)
    for part in parts:
        part.save_pretrained(directory)
    return directory


LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %} {% else %}ASSISTANT: "
    "{{ message['content'][0]['text'] }}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def save_llava15(directory: Path) -> Path:
    tokenizer = llama_style_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    processor = LlavaProcessor(
        CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size=IMAGE_SIZE),
        tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=tiny_clip_vision(),
        text_config=llama_text_config(len(tokenizer), ids("<pad>"), ids("<s>"), ids("</s>")),
        image_token_index=ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    return _save(directory, LlavaForConditionalGeneration(config), processor)


QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def save_qwen2_vl(
    directory: Path, config_class: Any = Qwen2VLConfig, model_class: Any = Qwen2VLForConditionalGeneration,
    vision: dict[str, Any] | None = None,
) -> Path:
    """Qwen2-VL (and Qwen2.5-VL, with its class and vision config) as their hub checkpoints are
    laid out: the image processor, tokenizer and chat template are saved apart (a
    `Qwen2VLProcessor` cannot be built without torchvision)."""
    tokenizer = byte_level_tokenizer(
        QWEN_SPECIAL, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(0)
    config = config_class(
        text_config={
            "vocab_size": len(tokenizer),
            **TINY_DECODER,
            "max_position_embeddings": 512,
            "pad_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "bos_token_id": None,
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [2, 1, 1],
                "rope_theta": 10000.0,
            },
        },
        vision_config=vision or {
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 4,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    return _save(directory, model_class(config), image_processor, tokenizer)


def save_qwen2_5_vl(directory: Path) -> Path:
    """Qwen2.5-VL: Qwen2-VL's text side and processor; a windowed ViT (window 28 px = one merged
    patch here, so the four windows differ from full attention; block 1 attends fully) whose
    `out_hidden_size` is the text width."""
    vision = {"depth": 2, "hidden_size": 32, "out_hidden_size": 32, "intermediate_size": 64,
              "num_heads": 4, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
              "window_size": 28, "fullatt_block_indexes": [1]}
    return save_qwen2_vl(directory, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, vision)


BLIP2_QUERIES = 4


def save_blip2_opt(directory: Path) -> Path:
    tokenizer = byte_level_tokenizer(
        ["<pad>", "</s>", "<unk>"],
        bos="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    # As on the hub: the processor adds "<image>" to the tokenizer (str image tokens break it).
    processor = Blip2Processor(
        BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer,
        num_query_tokens=BLIP2_QUERIES,
    )
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(0)
    config = Blip2Config(
        vision_config=dict(TINY_VISION),
        qformer_config={**TINY_QFORMER, "num_hidden_layers": 1},
        text_config={
            "model_type": "opt",
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "ffn_dim": 64,
            "num_attention_heads": 4,
            "word_embed_proj_dim": 32,
            "max_position_embeddings": 128,
            "pad_token_id": ids("<pad>"),
            "bos_token_id": ids("</s>"),
            "eos_token_id": ids("</s>"),
        },
        num_query_tokens=BLIP2_QUERIES,
        image_token_index=ids("<image>"),
    )
    return _save(directory, Blip2ForConditionalGeneration(config), processor)


def save_git(directory: Path) -> Path:
    tokenizer = bert_tokenizer()
    processor = GitProcessor(
        CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size=IMAGE_SIZE), tokenizer
    )
    torch.manual_seed(0)
    config = GitConfig(
        vision_config=dict(TINY_VISION),
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    return _save(directory, GitForCausalLM(config), processor)


def save_blip(directory: Path) -> Path:
    tokenizer = bert_tokenizer(("[DEC]",))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    processor = BlipProcessor(
        BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}), tokenizer
    )
    torch.manual_seed(0)
    config = BlipConfig(
        vision_config=dict(TINY_VISION),
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "encoder_hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "max_position_embeddings": 128,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.sep_token_id,
            "sep_token_id": tokenizer.sep_token_id,
        },
    )
    return _save(directory, BlipForConditionalGeneration(config), processor)


def save_paligemma(directory: Path) -> Path:
    """PaliGemma as google/paligemma-* ships: SigLIP + Gemma, a processor without a chat template
    whose image processor carries `image_seq_length` (here (32 / 8)^2 = 16 image tokens)."""
    tokenizer = gemma_tokenizer()
    image_processor = SiglipImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_seq_length=(IMAGE_SIZE // 8) ** 2
    )
    processor = PaliGemmaProcessor(image_processor, tokenizer)  # adds <image>, <loc....>, <seg...>
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(0)
    config = PaliGemmaConfig(
        vision_config={"model_type": "siglip_vision_model", **TINY_VISION, "vision_use_head": False},
        text_config={
            "model_type": "gemma",
            "vocab_size": len(tokenizer),
            **TINY_DECODER,
            "head_dim": 8,
            "max_position_embeddings": 256,
            "pad_token_id": ids("<pad>"),
            "bos_token_id": ids("<bos>"),
            "eos_token_id": ids("<eos>"),
        },
        image_token_index=ids("<image>"),
        vocab_size=len(tokenizer),
        projection_dim=32,
        hidden_size=32,
        pad_token_id=ids("<pad>"),
    )
    return _save(directory, PaliGemmaForConditionalGeneration(config), processor)


INSTRUCTBLIP_QUERIES = 4


def save_instructblip(directory: Path) -> Path:
    """InstructBLIP with a Vicuna (Llama) decoder, as Salesforce/instructblip-vicuna-7b ships: a
    Llama tokenizer that adds BOS, a BERT tokenizer for the Q-Former's instruction, and the
    processor's `<image>` query placeholders."""
    tokenizer = llama_style_tokenizer(["<unk>", "<s>", "</s>", "<pad>"], pad_token="<pad>")
    qformer_tokenizer = bert_tokenizer()
    processor = InstructBlipProcessor(
        BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer,
        qformer_tokenizer,
        num_query_tokens=INSTRUCTBLIP_QUERIES,
    )  # adds <image> to the tokenizer
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(0)
    config = InstructBlipConfig(
        vision_config=dict(TINY_VISION),
        qformer_config={
            **TINY_QFORMER,
            "num_hidden_layers": 2,  # the last layer's text FFN is unused: a test sees it
            "vocab_size": len(qformer_tokenizer),
            "pad_token_id": qformer_tokenizer.pad_token_id,
        },
        text_config=llama_text_config(len(tokenizer), ids("<pad>"), ids("<s>"), ids("</s>")).to_dict(),
        num_query_tokens=INSTRUCTBLIP_QUERIES,
        image_token_index=ids("<image>"),
    )
    return _save(directory, InstructBlipForConditionalGeneration(config), processor)


SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def save_hf(directory: Path) -> Path:
    """The generic family's example: SmolVLM / Idefics3 (text model under `text_model`, a
    pixel-shuffle connector, image-tile marker tokens, `pixel_attention_mask`)."""
    special = [
        "<|endoftext|>",
        "<|im_start|>",
        "<fake_token_around_image>",
        "<image>",
        "<end_of_utterance>",
        "<global-img>",
    ]
    tokenizer = byte_level_tokenizer(
        special, eos_token="<end_of_utterance>", pad_token="<|endoftext|>"
    )
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": IMAGE_SIZE},
        do_image_splitting=False,
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    processor = Idefics3Processor(
        image_processor, tokenizer, image_seq_len=4, chat_template=SMOLVLM_TEMPLATE
    )
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(0)
    text = llama_text_config(
        len(tokenizer), ids("<|endoftext|>"), ids("<|im_start|>"), ids("<end_of_utterance>")
    )
    config = Idefics3Config(
        vision_config=dict(TINY_VISION),
        text_config=text.to_dict(),
        scale_factor=2,
        image_token_id=ids("<image>"),
    )
    return _save(directory, Idefics3ForConditionalGeneration(config), processor)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "llava15": save_llava15,
    "qwen2_vl": save_qwen2_vl,
    "qwen2_5_vl": save_qwen2_5_vl,
    "paligemma": save_paligemma,
    "instructblip": save_instructblip,
    "blip2_opt": save_blip2_opt,
    "git": save_git,
    "blip": save_blip,
    "hf": save_hf,
}
FAMILY_NAMES = list(BUILDERS)


def model_cfg(family: str, path: Path, **overrides: Any) -> ModelConfig:
    cfg = ModelConfig(family=family, name_or_path=str(path), dtype="auto", max_length=32)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg
