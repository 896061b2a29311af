"""Captions of a scene, in the two styles of text.py's two distributions: broad pre-training
styles (sizes, positions, counts, grey/big/little sometimes) and the narrower COCO-like downstream
style. Both name every object's colour and shape; the words they use are listed in text.py's
vocabulary_words(), which the tests check against generated captions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ptpeft_cli.synthetic import vocabulary
from ptpeft_cli.synthetic.world import Scene, SceneObject

Rng = np.random.Generator
Objects = Sequence[SceneObject]

_RELATION_PROBABILITY = 0.2
_SYNONYM_PROBABILITY = 0.15  # pre-training uses grey/big/little sometimes, so downstream may


def pick(rng: Rng, options: Sequence[str]) -> str:
    """One of `options`, uniformly (one rng draw; text.py's questions pick the same way)."""
    return options[int(rng.integers(len(options)))]


def indefinite_article(word: str) -> str:
    """'a' or 'an' before `word` (enough for the closed vocabulary)."""
    return "an" if word[0] in "aeiou" else "a"


def position_phrase(obj: SceneObject) -> str:
    """Where the object is, in words: "on the left", "at the bottom right", "in the middle"."""
    horizontal, vertical = obj.horizontal, obj.vertical
    if horizontal == "middle" and vertical == "middle":
        return "in the middle"
    if vertical == "middle":
        return f"on the {horizontal}"
    if horizontal == "middle":
        return f"at the {vertical}"
    return f"at the {vertical} {horizontal}"


def _phrase(obj: SceneObject, rng: Rng, *, size: bool = False, position: bool = False,
            synonyms: float = 0.0) -> str:
    """'a large red circle on the left'-style noun phrase; synonyms = chance of grey/big/little."""
    colour = obj.colour
    if colour == "gray" and rng.random() < synonyms:
        colour = "grey"
    words = [colour, obj.shape]
    if size:
        size_word = obj.size
        if rng.random() < synonyms:
            size_word = {"large": "big", "small": "little"}[obj.size]
        words.insert(0, size_word)
    text = f"{indefinite_article(words[0])} {' '.join(words)}"
    return f"{text} {position_phrase(obj)}" if position else text


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def _count_noun(n: int, rng: Rng) -> str:
    noun = pick(rng, ("object", "shape"))
    return f"{vocabulary.NUMBER_WORDS[n]} {noun}{'s' if n != 1 else ''}"


# ---- pre-training caption styles (broad) ----------------------------------------------------


def _pt_there_is(objs: Objects, rng: Rng) -> str:
    phrases = [_phrase(o, rng, size=True, position=True, synonyms=_SYNONYM_PROBABILITY) for o in objs]
    if len(objs) == 1 and rng.random() < 0.5:
        return f"there is a single object: {phrases[0]}."
    return f"there is {_join(phrases)}."


def _pt_shows(objs: Objects, rng: Rng) -> str:
    phrases = [_phrase(o, rng, size=True, synonyms=_SYNONYM_PROBABILITY) for o in objs]
    subject = pick(rng, ("the image", "the picture", "this image", "this picture"))
    return f"{subject} shows {_count_noun(len(objs), rng)}: {', '.join(phrases)}."


def _pt_list(objs: Objects, rng: Rng) -> str:
    return f"{_join([_phrase(o, rng, size=True, synonyms=_SYNONYM_PROBABILITY) for o in objs])}."


def _pt_sentences(objs: Objects, rng: Rng) -> str:
    sentences = [f"{_count_noun(len(objs), rng)}."]
    for obj in objs:
        verb = "is sitting" if rng.random() < _RELATION_PROBABILITY else "is"
        sentences.append(f"the {obj.colour} {obj.shape} {verb} {position_phrase(obj)}.")
    return " ".join(sentences)


def _pt_background(objs: Objects, rng: Rng) -> str:
    phrases = [_phrase(o, rng, size=True, position=True, synonyms=_SYNONYM_PROBABILITY) for o in objs]
    text = f"a dark background with {_join(phrases)}."
    if len(objs) >= 2 and rng.random() < _RELATION_PROBABILITY * 2:
        first, second = objs[0], objs[1]
        text += f" next to the {first.colour} {first.shape} there is {_phrase(second, rng)}."
    return text


def _pt_counts(objs: Objects, rng: Rng) -> str:
    n_large = sum(o.size == "large" for o in objs)
    words = vocabulary.NUMBER_WORDS
    return (
        f"number of objects: {words[len(objs)]}. large: {words[n_large]}. "
        f"small: {words[len(objs) - n_large]}. each of them: "
        f"{', '.join(f'{o.colour} {o.shape}' for o in objs)}."
    )


_PRETRAIN_STYLES: tuple[Callable[[Objects, Rng], str], ...] = (
    _pt_there_is, _pt_shows, _pt_list, _pt_sentences, _pt_background, _pt_counts)


# ---- downstream caption style (COCO-like) --------------------------------------------------


def _coco_picture_of(objs: Objects, rng: Rng) -> str:
    phrases = [_phrase(o, rng) for o in objs]
    if len(objs) == 2:
        return f"a picture of {phrases[0]} next to {phrases[1]}."
    return f"a picture of {_join(phrases)}."


def _coco_on_background(objs: Objects, rng: Rng) -> str:
    if len(objs) == 1:
        return f"a single {objs[0].colour} {objs[0].shape} on a dark background."
    return (
        f"{vocabulary.NUMBER_WORDS[len(objs)]} shapes on a dark background: "
        f"{_join([_phrase(o, rng) for o in objs])}."
    )


def _coco_plain(objs: Objects, rng: Rng) -> str:
    return f"{_join([_phrase(o, rng, synonyms=0.5) for o in objs])}."


def _coco_image_with(objs: Objects, rng: Rng) -> str:
    phrases = [_phrase(o, rng, size=True, synonyms=0.5) for o in objs]
    return f"an image with {_join(phrases)}."


def _coco_sitting(objs: Objects, rng: Rng) -> str:
    phrases = [_phrase(o, rng) for o in objs]
    if len(objs) == 1:
        return f"{phrases[0]} sitting {position_phrase(objs[0])}."
    return f"{phrases[0]} sitting next to {_join(phrases[1:])}."


_COCO_STYLES = (_coco_picture_of, _coco_on_background, _coco_plain, _coco_image_with, _coco_sitting)


def _shuffled(objs: Objects, rng: Rng) -> list[SceneObject]:
    return [objs[i] for i in rng.permutation(len(objs))]


def pretrain_captions(scene: Scene, rng: Rng) -> list[str]:
    """Two captions of one pre-training image, in two different pre-training styles."""
    styles = rng.choice(len(_PRETRAIN_STYLES), size=2, replace=False)
    return [_PRETRAIN_STYLES[i](_shuffled(scene.objects, rng), rng) for i in styles]


def coco_captions(scene: Scene, rng: Rng, n: int = 5) -> list[str]:
    """n COCO-style reference captions; each names every object's colour and shape."""
    order = list(rng.permutation(len(_COCO_STYLES)))
    while len(order) < n:
        order.extend(rng.permutation(len(_COCO_STYLES)))
    return [_COCO_STYLES[i](_shuffled(scene.objects, rng), rng) for i in order[:n]]
