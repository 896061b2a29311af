"""Scene-grounded caption metrics for the synthetic world: do captions name what is there?

CIDEr rewards wording close to the references; these metrics ask instead whether the
colour+shape pairs a caption names exist in the image (precision, i.e. 1 - hallucination rate)
and how many of the image's objects get named (recall). Hand-written because the vocabulary is
closed and tiny: a scan over the words is all it takes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ptpeft_cli.synthetic.vocabulary import SIZE_SYNONYMS, SIZES, canonical_colour, canonical_shape

_WORD = re.compile(r"[a-z]+")
_SIZE_WORDS = frozenset(SIZES) | frozenset(SIZE_SYNONYMS)


def caption_mentions(caption: str) -> set[tuple[str, str]]:
    """Canonical (colour, shape) pairs a caption names.

    A mention is a colour word directly followed by a shape word (singular or plural), with at
    most one size word between them ("red circle", "red large circles"); a size word before the
    colour ("large red circle") is simply skipped. Repeats count once: naming the same object
    twice is one claim about the image.
    """
    words = _WORD.findall(caption.lower())
    mentions: set[tuple[str, str]] = set()
    for index, word in enumerate(words):
        colour = canonical_colour(word)
        if colour is None:
            continue
        following = words[index + 1 : index + 3]
        if following and following[0] in _SIZE_WORDS:
            following = following[1:]
        shape = canonical_shape(following[0]) if following else None
        if shape is not None:
            mentions.add((colour, shape))
    return mentions


def _scene_objects(scene: Any) -> Iterable[Any]:
    """A scene's objects: a ``Scene`` (``.objects``) or any iterable of objects."""
    return getattr(scene, "objects", scene)


def object_precision_recall(captions: dict[int, str], scenes: dict[int, Any]) -> dict[str, float]:
    """Micro-averaged object precision and recall of captions against their scenes.

    ``object_precision`` = correct mentions / all mentions (0.0 when nothing is named);
    ``object_recall`` = scene objects whose colour+shape is named / all scene objects.
    Scene objects need ``.colour`` and ``.shape`` attributes (canonical names).
    """
    missing = [image_id for image_id in captions if image_id not in scenes]
    if missing:
        raise ValueError(f"{len(missing)} captioned image(s) have no scene (e.g. {missing[0]})")
    mentioned = correct = objects = named = 0
    for image_id, caption in captions.items():
        mentions = caption_mentions(caption)
        present = [(obj.colour, obj.shape) for obj in _scene_objects(scenes[image_id])]
        mentioned += len(mentions)
        correct += len(mentions & set(present))
        objects += len(present)
        named += sum(1 for pair in present if pair in mentions)
    return {
        "object_precision": correct / mentioned if mentioned else 0.0,
        "object_recall": named / objects if objects else 0.0,
    }
