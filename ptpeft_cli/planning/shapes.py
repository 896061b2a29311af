"""A checkpoint's shapes as the estimates need them, read from its config alone (meta device).

The checkpoint is `model.name_or_path`: a hub id with a config shipped in models/real_configs/, or
a local directory holding a `config.json` (e.g. a checkpoint already downloaded, or a test's tiny
one). Nothing here is family-specific: the family says where its language model is, and the image
processor of the checkpoint says how many patches and tokens an image becomes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from torch import nn

from ptpeft_cli.errors import UserError
from ptpeft_cli.models import get_family
from ptpeft_cli.models.real_size import build_model, real_checkpoints

# Images are sized like COCO's: most are 640 x 480 (what a resolution-keeping processor sees).
COCO_IMAGE = (640, 480)


@dataclass(frozen=True)
class Shapes:
    """What one forward pass of a checkpoint costs, per image and per sequence token."""

    checkpoint: str  # hub id or directory
    family: str
    total_params: int
    hidden: int
    layers: int
    vocab: int
    token_params: int  # multiply every sequence token: the decoder stack (not its lookup table) + the LM head
    image_params: int  # the rest (vision tower, projector, Q-Former), counted once per image patch
    patches: int  # vision patches of one COCO image
    image_tokens: int  # positions one image takes in the language model's sequence


def checkpoint_dir(family_name: str, model_cfg: Any) -> tuple[str, Path]:
    """(checkpoint name, directory holding its config.json) for `model.name_or_path`."""
    name = get_family(family_name).checkpoint(model_cfg)
    shipped = real_checkpoints()
    if name in shipped:
        return name, shipped[name].directory
    if (Path(name) / "config.json").is_file():
        return name, Path(name)
    raise UserError(f"ptpeft plan needs the shapes of model.name_or_path={name}: it is neither a checkpoint "
                    f"with a shipped config ({', '.join(shipped)}) nor a local directory with a config.json")


@cache
def meta_model(name: str, directory: Path) -> nn.Module:
    """The checkpoint's architecture on the meta device (shapes only, no memory)."""
    if name in real_checkpoints():
        return build_model(name)
    import torch
    import transformers

    architecture = json.loads((directory / "config.json").read_text())["architectures"][0]
    config = transformers.AutoConfig.from_pretrained(str(directory))
    with torch.device("meta"):
        return getattr(transformers, architecture)(config)


def _unique(module: nn.Module) -> dict[int, nn.Parameter]:
    return {id(p): p for p in module.parameters()}


@cache
def shapes(family_name: str, name: str, directory: Path) -> Shapes:
    model = meta_model(name, directory)
    family = get_family(family_name)
    stack = _unique(family.language_model(model))
    lookup = _unique(model.get_input_embeddings())
    head = model.get_output_embeddings() or model.get_input_embeddings()  # BLIP hides its head: tied anyway
    hidden, vocab = family.hidden_size(model), int(head.weight.shape[0])
    separate_head = {k: v for k, v in _unique(head).items() if k not in stack}
    total = sum(p.numel() for p in _unique(model).values())
    in_stack = sum(p.numel() for k, p in stack.items() if k not in lookup)
    outside = total - sum(p.numel() for p in stack.values()) - sum(p.numel() for p in separate_head.values())
    patches, image_tokens = image_geometry(directory, model.config)
    return Shapes(checkpoint=name, family=family_name, total_params=total, hidden=hidden,
                  layers=family.num_layers(model), vocab=vocab, token_params=in_stack + vocab * hidden,
                  image_params=outside, patches=patches, image_tokens=image_tokens)


def image_geometry(directory: Path, config: Any) -> tuple[int, int]:
    """(vision patches, language-model positions) of one COCO-sized image: the checkpoint's own
    image processor is run on a blank 640 x 480 image, so a resolution-keeping processor
    (Qwen2-VL's grid) and a fixed-size one (CLIP, BLIP) are counted alike."""
    vision = getattr(config, "vision_config", None)
    patch = int(getattr(vision, "patch_size", 14) or 14)
    grid, merge = None, 1
    if (directory / "preprocessor_config.json").is_file():
        from PIL import Image
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(str(directory))
        out = processor(Image.new("RGB", COCO_IMAGE), return_tensors="pt")
        if "image_grid_thw" in out:
            grid, merge = math.prod(int(x) for x in out["image_grid_thw"][0]), int(getattr(processor, "merge_size", 1))
        else:
            height, width = out["pixel_values"].shape[-2:]
            grid = (int(height) // patch) * (int(width) // patch)
    if grid is None:  # no processor config: one square image of the tower's size
        side = int(getattr(vision, "image_size", 224)) // patch
        grid = side * side
    tokens = getattr(config, "num_query_tokens", None) or getattr(config, "image_seq_length", None) or grid // merge**2
    return grid, int(tokens)
