"""Random-weight checkpoints with the exact shapes of real ones, built offline for `make bench-gpu`.

`build_checkpoint(hub_id, directory)` writes what a hub checkpoint holds, with `save_pretrained`,
so that `model.name_or_path=<directory>` loads it through ptpeft's own family code:

- the architecture from the checkpoint's shipped `config.json` (ptpeft_cli/models/real_configs),
  random weights in bf16 built directly on the GPU; with `tiny`, the same classes scaled down
  (hidden 32, 2 layers, 56-pixel images) in fp32 on the CPU;
- a word-level tokenizer with the real special tokens at their real ids (`tokenizer` in the
  checkpoint's ptpeft.json; else bos/eos/pad/image ids from the config under generic names),
  padded to the real vocabulary size, so embeddings and logits have their real shapes;
- the real image processor settings (preprocessor_config.json) and the processor the family
  loads (`PROCESSORS`; a family that assembles its own, like Qwen2-VL's, gets the parts).

Throughput depends on shapes, not on weight values, so these time what the real checkpoints
would. Text is split into whole words, a few tokens fewer than the real BPE tokenizers make;
image tokens (576 per LLaVA image) dominate the sequences anyway.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoImageProcessor, Blip2Processor, LlavaProcessor, PreTrainedTokenizerFast

from ptpeft_cli.models.real_size import real_checkpoint, real_config
from ptpeft_cli.models.tiny_llava import shipped_checkpoint_dir

TINY_HIDDEN, TINY_FFN, TINY_LAYERS, TINY_HEADS, TINY_IMAGE = 32, 64, 2, 4, 56


def _llava(config: Any, image_processor: Any, tokenizer: Any) -> Any:
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                          patch_size=config.vision_config.patch_size, num_additional_image_tokens=1,
                          vision_feature_select_strategy=config.vision_feature_select_strategy)


def _blip2(config: Any, image_processor: Any, tokenizer: Any) -> Any:
    return Blip2Processor(image_processor, tokenizer, num_query_tokens=config.num_query_tokens)


# Architecture -> the processor its family loads with AutoProcessor. Families that assemble their
# processor from an image processor and a tokenizer (Qwen2-VL) need no entry.
PROCESSORS: dict[str, Callable[[Any, Any, Any], Any]] = {
    "LlavaForConditionalGeneration": _llava,
    "Blip2ForConditionalGeneration": _blip2,
}


def shrink(config: Any) -> Any:
    """The same architecture at toy size: every width, depth and head count of the model and its
    sub-models scaled down consistently (vision output = text input width), vocabularies and
    token ids kept; 56-pixel images."""
    for part in [config, *(getattr(config, name) for name in getattr(config, "sub_configs", {}))]:
        heads = next((getattr(part, k) for k in ("num_attention_heads", "num_heads")
                      if isinstance(getattr(part, k, None), int)), None)
        sizes = {TINY_HIDDEN: ("hidden_size", "embed_dim", "encoder_hidden_size", "word_embed_proj_dim",
                               "projection_dim"),
                 TINY_FFN: ("intermediate_size", "ffn_dim"), TINY_LAYERS: ("num_hidden_layers", "depth"),
                 TINY_HEADS: ("num_attention_heads", "num_heads"), TINY_IMAGE: ("image_size",)}
        for value, keys in sizes.items():
            for key in keys:
                if isinstance(getattr(part, key, None), int) and not isinstance(getattr(part, key), bool):
                    setattr(part, key, value)
        if isinstance(getattr(part, "num_key_value_heads", None), int):
            part.num_key_value_heads = TINY_HEADS if part.num_key_value_heads == heads else TINY_HEADS // 2
        if getattr(part, "head_dim", None):
            part.head_dim = TINY_HIDDEN // TINY_HEADS
        if isinstance(getattr(part, "layer_types", None), list):
            part.layer_types = part.layer_types[:TINY_LAYERS]
        for rope in (getattr(part, "rope_parameters", None), getattr(part, "rope_scaling", None)):
            if isinstance(rope, dict) and "mrope_section" in rope:  # sums to half the head dim
                rope["mrope_section"] = [2, 1, 1]
    return config


def _world_words() -> list[str]:
    """The synthetic world's words (the shipped tiny model's vocabulary), so targets are words."""
    vocab = json.loads((shipped_checkpoint_dir() / "tokenizer.json").read_text())["model"]["vocab"]
    return [word for word in vocab if not word.startswith("<")]


def _tokenizer_spec(hub_id: str, config: Any) -> dict[str, Any]:
    info = json.loads((real_checkpoint(hub_id).directory / "ptpeft.json").read_text())
    if "tokenizer" in info:
        return info["tokenizer"]
    text = config.get_text_config()
    spec: dict[str, Any] = {"special": {}, "add_bos": False, "extra": {}}
    for role, ids in (("bos", [getattr(text, "bos_token_id", None)]), ("eos", [getattr(text, "eos_token_id", None)]),
                      ("pad", [getattr(text, "pad_token_id", None), getattr(config, "pad_token_id", None)])):
        token_id = next((i for i in ids if isinstance(i, int)), None)
        if token_id is not None:
            spec["special"][f"<{role}>"] = token_id
            spec[role] = f"<{role}>"
    image = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
    if isinstance(image, int):
        spec["special"]["<image>"] = image
        spec["extra"]["image_token"] = "<image>"
    return spec


def build_tokenizer(hub_id: str, config: Any) -> PreTrainedTokenizerFast:
    """Word-level, lower-cased, the real special tokens at their real ids, padded with unused
    tokens to the real vocabulary size."""
    spec = _tokenizer_spec(hub_id, config)
    vocab_size = int(config.get_text_config().vocab_size)
    special = dict(spec["special"])
    unk = spec.get("unk") or "<unk>"
    taken = set(special.values())
    free = (i for i in range(vocab_size) if i not in taken)
    if unk not in special:
        special[unk] = next(free)
    vocab = {**special, **{word: next(free) for word in _world_words() if word not in special}}
    vocab.update({f"<unused{i}>": i for i in free})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    backend.add_special_tokens(list(special))
    if spec.get("add_bos"):
        backend.post_processor = processors.TemplateProcessing(single=f"{spec['bos']} $A",
                                                               special_tokens=[(spec["bos"], special[spec["bos"]])])
    roles = {f"{role}_token": spec[role] for role in ("bos", "eos", "pad") if spec.get(role)}
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=unk, extra_special_tokens=spec.get("extra", {}),
                                   clean_up_tokenization_spaces=False, **roles)


def build_image_processor(hub_id: str, tiny: bool) -> Any:
    """The real image processor settings; `tiny`: 56-pixel outputs for fixed-size processors
    (a size-preserving one, Qwen2-VL's, gets 56-pixel images from the bench instead)."""
    directory = real_checkpoint(hub_id).directory
    overrides: dict[str, Any] = {}
    if tiny:
        settings = json.loads((directory / "preprocessor_config.json").read_text())
        size = settings.get("size") or {}
        if "shortest_edge" in size and "min_pixels" not in settings:
            overrides["size"] = {"shortest_edge": TINY_IMAGE}
        elif "height" in size:
            overrides["size"] = {"height": TINY_IMAGE, "width": TINY_IMAGE}
        if "crop_size" in settings:
            overrides["crop_size"] = {"height": TINY_IMAGE, "width": TINY_IMAGE}
    return AutoImageProcessor.from_pretrained(str(directory), **overrides)


def build_model(hub_id: str, config: Any, tiny: bool, device: torch.device) -> Any:
    """Random weights, bf16 at real size (built on `device`, no fp32 copy), fp32 when tiny."""
    cls = getattr(transformers, real_checkpoint(hub_id).architecture)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32 if tiny else torch.bfloat16)
    try:
        torch.manual_seed(0)
        with torch.device(device):
            return cls(config)
    finally:
        torch.set_default_dtype(previous)


def build_checkpoint(hub_id: str, directory: Path, tiny: bool = False, device: torch.device | None = None) -> Path:
    """Write the random-weight checkpoint of `hub_id` to `directory`; returns it."""
    config = real_config(hub_id)
    if tiny:
        shrink(config)
    device = device or torch.device("cuda" if torch.cuda.is_available() and not tiny else "cpu")
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(hub_id, config)
    image_processor = build_image_processor(hub_id, tiny)
    assemble = PROCESSORS.get(real_checkpoint(hub_id).architecture)
    parts = [assemble(config, image_processor, tokenizer)] if assemble else [image_processor, tokenizer]
    model = build_model(hub_id, config, tiny, device)
    model.save_pretrained(directory)
    del model
    for part in parts:
        part.save_pretrained(directory)
    return directory
