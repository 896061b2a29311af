"""Data: the synthetic world, its official-format writer, and loaders for those formats.

Names are imported lazily: `world` and `text` are used by pre-training worker processes that
should not pay for importing `datasets`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Scene": "world",
    "SceneObject": "world",
    "sample_scene": "world",
    "render": "world",
    "VQAItem": "text",
    "pretrain_texts": "text",
    "coco_captions": "text",
    "vqa_items": "text",
    "vocabulary_words": "text",
    "tokenize": "text",
    "WorldSpec": "writer",
    "WorldPaths": "writer",
    "ensure_world": "writer",
    "load_karpathy_captions": "coco",
    "load_pretrain_corpus": "coco",
    "load_scenes": "coco",
    "load_vqa": "vqa",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
