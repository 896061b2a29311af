"""Downstream VQA question kinds that the pre-training corpus never asks.

The pre-training corpus (text.pretrain_texts) asks about one object's colour, shape or position,
about counts and about presence, so those kinds cannot show whether fine-tuning teaches anything:
the shipped model already answers them. The kinds here need *composition* of what the model knows:
pick an object by its relation to another ("the shape to the left of the red circle") or by its
size ("the large object"), then report an attribute of it or count such objects. Every word they
use is already in the shipped tokenizer's vocabulary, so no question or answer word becomes UNK,
and text.py (hence the pre-training corpus and the shipped checkpoint) stays as it is.

A question is emitted only where it is well-defined: a relation needs every other object clearly
to one side of the reference (centres at least RELATION_MARGIN apart), and a size question needs
exactly one object of that size among at least two.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from ptpeft_cli.synthetic import vocabulary
from ptpeft_cli.synthetic.text import Question, Rng, VQAItem, human_answers
from ptpeft_cli.synthetic.world import Scene, SceneObject

# Minimum horizontal distance between two centres, as a fraction of the image width (about 10
# pixels at 64x64: more than a patch), for "to the left of" to be unambiguous to a person.
RELATION_MARGIN = 0.15
SIDES: tuple[str, ...] = ("left", "right")
_COLOUR_NAMES: tuple[str, ...] = tuple(vocabulary.COLOURS)

# The kinds and the patterns that recognise their questions; none of these patterns occurs in
# the pre-training corpus (a test checks it), which is what makes them downstream-only.
_OBJECT = rf"(?:{'|'.join(_COLOUR_NAMES)}) (?:{'|'.join(vocabulary.SHAPES)})"
_OF_OBJECT = rf"to the (?:left|right) of the {_OBJECT}\?"
KIND_PATTERNS: dict[str, re.Pattern[str]] = {
    "relation_colour": re.compile(rf"what color is the shape {_OF_OBJECT}"),
    "relation_shape": re.compile(rf"what shape is the object {_OF_OBJECT}"),
    "relation_count": re.compile(rf"how many objects are {_OF_OBJECT}"),
    "relation_yes_no": re.compile(rf"is the {_OBJECT} {_OF_OBJECT}"),
    "size_colour": re.compile(r"what color is the (?:large|small) object\?"),
    "size_shape": re.compile(r"what shape is the (?:large|small) object\?"),
    "size_count": re.compile(r"how many (?:large|small) objects are there\?"),
}
COMPOSITIONAL_KINDS: tuple[str, ...] = tuple(KIND_PATTERNS)
# Phrases that only these kinds use: the pre-training corpus must contain none of them.
NEW_PHRASES: tuple[str, ...] = ("to the left of", "to the right of", "large object",
                                "small object", "large objects", "small objects")


def question_kind(question: str) -> str | None:
    """The compositional kind a question text belongs to (None: not one of these kinds)."""
    for kind, pattern in KIND_PATTERNS.items():
        if pattern.fullmatch(question):
            return kind
    return None


def _name(obj: SceneObject) -> str:
    """'red circle': (colour, shape) pairs are distinct within a scene, so this is unique."""
    return f"{obj.colour} {obj.shape}"


def _clear_references(scene: Scene) -> list[SceneObject]:
    """Objects from which every other object is clearly left or clearly right."""
    return [ref for ref in scene.objects
            if all(abs(o.x - ref.x) >= RELATION_MARGIN for o in scene.objects if o is not ref)]


def _on_side(scene: Scene, ref: SceneObject, side: str) -> list[SceneObject]:
    sign = -1 if side == "left" else 1
    return [o for o in scene.objects if o is not ref and sign * (o.x - ref.x) >= RELATION_MARGIN]


def _relation_target(scene: Scene, rng: Rng) -> tuple[SceneObject, str, SceneObject] | None:
    """(reference, side, target) with exactly one object on that side of the reference."""
    options = [(ref, side, targets[0]) for ref in _clear_references(scene) for side in SIDES
               if len(targets := _on_side(scene, ref, side)) == 1]
    return options[int(rng.integers(len(options)))] if options else None


def _other(options: tuple[str, ...], answer: str) -> tuple[str, ...]:
    return tuple(o for o in options if o != answer)


def _count_wrong(count: int) -> tuple[str, ...]:
    return tuple(str(c) for c in (count - 1, count + 1) if 0 <= c <= vocabulary.MAX_OBJECTS)


def _relation_colour(scene: Scene, rng: Rng) -> Question | None:
    found = _relation_target(scene, rng)
    if found is None:
        return None
    ref, side, target = found
    text = f"what color is the shape to the {side} of the {_name(ref)}?"
    return Question(text, "what color is the", "other", target.colour,
                    _other(_COLOUR_NAMES, target.colour))


def _relation_shape(scene: Scene, rng: Rng) -> Question | None:
    found = _relation_target(scene, rng)
    if found is None:
        return None
    ref, side, target = found
    text = f"what shape is the object to the {side} of the {_name(ref)}?"
    return Question(text, "what shape is the", "other", target.shape,
                    _other(vocabulary.SHAPES, target.shape))


def _relation_count(scene: Scene, rng: Rng) -> Question | None:
    """How many objects lie on one side of a reference, among >= 2 objects. The count is drawn
    first over the counts this scene offers, 0 at half weight, so "0" is not the usual answer
    (every two-object scene offers it)."""
    if len(scene.objects) < 2:
        return None
    by_count: dict[int, list[tuple[SceneObject, str]]] = {}
    for ref in _clear_references(scene):
        for side in SIDES:
            by_count.setdefault(len(_on_side(scene, ref, side)), []).append((ref, side))
    if not by_count:
        return None
    counts = sorted(by_count)
    weights = np.array([0.5 if c == 0 else 1.0 for c in counts])
    count = counts[int(rng.choice(len(counts), p=weights / weights.sum()))]
    ref, side = by_count[count][int(rng.integers(len(by_count[count])))]
    text = f"how many objects are to the {side} of the {_name(ref)}?"
    return Question(text, "how many", "number", str(count), _count_wrong(count))


def _relation_yes_no(scene: Scene, rng: Rng) -> Question | None:
    """'is the red circle to the left of the blue square?', yes half the time."""
    pairs = [(a, b) for a in scene.objects for b in scene.objects
             if a is not b and abs(a.x - b.x) >= RELATION_MARGIN]
    if not pairs:
        return None
    want_yes = bool(rng.random() < 0.5)
    a, b = pairs[int(rng.integers(len(pairs)))]
    actual = "left" if a.x < b.x else "right"
    side = actual if want_yes else _other(SIDES, actual)[0]
    answer, wrong = ("yes", ("no",)) if want_yes else ("no", ("yes",))
    return Question(f"is the {_name(a)} to the {side} of the {_name(b)}?", "is the", "yes/no",
                    answer, wrong)


def _only_of_size(scene: Scene, rng: Rng) -> tuple[str, SceneObject] | None:
    """(size, object) where that object is the only one of its size among >= 2 objects."""
    if len(scene.objects) < 2:
        return None
    options = [(size, same[0]) for size in vocabulary.SIZES
               if len(same := [o for o in scene.objects if o.size == size]) == 1]
    return options[int(rng.integers(len(options)))] if options else None


def _size_colour(scene: Scene, rng: Rng) -> Question | None:
    found = _only_of_size(scene, rng)
    if found is None:
        return None
    size, obj = found
    return Question(f"what color is the {size} object?", "what color is the", "other", obj.colour,
                    _other(_COLOUR_NAMES, obj.colour))


def _size_shape(scene: Scene, rng: Rng) -> Question | None:
    found = _only_of_size(scene, rng)
    if found is None:
        return None
    size, obj = found
    return Question(f"what shape is the {size} object?", "what shape is the", "other", obj.shape,
                    _other(vocabulary.SHAPES, obj.shape))


def _size_count(scene: Scene, rng: Rng) -> Question:
    size = vocabulary.SIZES[int(rng.integers(len(vocabulary.SIZES)))]
    count = sum(o.size == size for o in scene.objects)
    return Question(f"how many {size} objects are there?", "how many", "number", str(count),
                    _count_wrong(count))


_BUILDERS: dict[str, Callable[[Scene, Rng], Question | None]] = {
    "relation_colour": _relation_colour,
    "relation_shape": _relation_shape,
    "relation_count": _relation_count,
    "relation_yes_no": _relation_yes_no,
    "size_colour": _size_colour,
    "size_shape": _size_shape,
    "size_count": _size_count,
}
assert tuple(_BUILDERS) == COMPOSITIONAL_KINDS


def compositional_items(scene: Scene, rng: Rng) -> list[VQAItem]:
    """1-5 VQAv2-style items for one image: a random subset (at most 3-5) of the kinds the scene
    answers unambiguously, each with ten human-like answers in vqa_items' style."""
    built = {kind: build(scene, rng) for kind, build in _BUILDERS.items()}
    available = [kind for kind, question in built.items() if question is not None]
    n_questions = int(rng.integers(3, 6))
    items = []
    for index in sorted(rng.permutation(len(available))[:n_questions]):
        question = built[available[index]]
        assert question is not None
        answers, confidences = human_answers(question, rng)
        items.append(VQAItem(question.text, question.question_type, question.answer_type,
                             answers, confidences))
    return items
