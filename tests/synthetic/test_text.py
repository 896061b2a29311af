"""Texts about scenes: correct answers, the two styles, and one closed vocabulary."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from ptpeft_cli.synthetic import vocabulary
from ptpeft_cli.synthetic.captions import coco_captions
from ptpeft_cli.synthetic.text import (
    ANSWER_TYPES,
    CAPTION_INSTRUCTION,
    pretrain_texts,
    tokenize,
    vocabulary_words,
    vqa_items,
)
from ptpeft_cli.synthetic.world import Scene, sample_scene


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return [sample_scene(np.random.default_rng([5, i]), i) for i in range(800)]


def _truth(question: str, scene: Scene) -> str:
    """Answer a question from the scene, independently of text.py's builders."""
    objs = scene.objects
    colours = "|".join(vocabulary.COLOURS)
    shapes = "|".join(vocabulary.SHAPES)
    plurals = "|".join(vocabulary.SHAPE_PLURALS.values())
    if m := re.fullmatch(
        rf"(?:what color is the|what is the color of the|which color does the) ({shapes})(?: have)?\?",
        question,
    ):
        (obj,) = [o for o in objs if o.shape == m[1]]
        return obj.colour
    if m := re.fullmatch(
        rf"(?:what shape is the|what is the shape of the) ({colours}) object\?|which shape is ({colours})\?",
        question,
    ):
        (obj,) = [o for o in objs if o.colour == (m[1] or m[2])]
        return obj.shape
    if re.fullmatch(
        r"how many (objects are there|shapes are in the image|objects does the picture contain)\?",
        question,
    ):
        return str(len(objs))
    if m := re.fullmatch(rf"how many ({colours}) objects are there\?", question):
        return str(sum(o.colour == m[1] for o in objs))
    if m := re.fullmatch(rf"how many ({plurals}) are there\?", question):
        return str(sum(vocabulary.SHAPE_PLURALS[o.shape] == m[1] for o in objs))
    if m := re.fullmatch(
        rf"(?:is there|does the image contain) an? ({colours}) ({shapes})(?: in the picture)?\?",
        question,
    ):
        return "yes" if (m[1], m[2]) in {(o.colour, o.shape) for o in objs} else "no"
    if m := re.fullmatch(rf"is the ({shapes}) ({colours})\?", question):
        (obj,) = [o for o in objs if o.shape == m[1]]
        return "yes" if obj.colour == m[2] else "no"
    if m := re.fullmatch(rf"is the ({colours}) ({shapes}) (on the left|at the top).*\?", question):
        (obj,) = [o for o in objs if (o.colour, o.shape) == (m[1], m[2])]
        return obj.horizontal if m[3] == "on the left" else obj.vertical
    raise AssertionError(f"unexpected question: {question!r}")


def test_vqa_answers_are_correct_and_human_like(scenes: list[Scene]) -> None:
    yes_no, kinds, noisy, total = Counter(), Counter(), 0, 0
    for scene in scenes:
        items = vqa_items(scene, np.random.default_rng([9, scene.image_id]))
        assert 3 <= len(items) <= 5
        assert len({item.question for item in items}) == len(items)
        for item in items:
            truth = _truth(item.question, scene)
            assert item.multiple_choice_answer == truth
            assert item.question.startswith(item.question_type)
            assert item.answer_type in ANSWER_TYPES
            assert len(item.answers) == 10 and len(item.answer_confidences) == 10
            assert set(item.answer_confidences) <= {"yes", "maybe", "no"}
            assert item.answers.count(truth) >= 5
            synonyms = {
                truth,
                vocabulary.NUMBER_WORDS.get(int(truth), truth) if truth.isdigit() else truth,
            }
            synonyms |= {w for w, c in vocabulary.COLOUR_SYNONYMS.items() if c == truth}
            noisy += sum(a not in synonyms for a in item.answers)
            total += 10
            kinds[item.answer_type] += 1
            if item.answer_type == "yes/no":
                yes_no[truth] += 1
    assert 0.45 <= yes_no["yes"] / sum(yes_no.values()) <= 0.55
    assert 0.02 <= noisy / total <= 0.12, "about 5-10% of human answers are wrong"
    assert min(kinds.values()) > 0.1 * sum(kinds.values())


def test_answers_use_synonyms(scenes: list[Scene]) -> None:
    answers = Counter(
        a
        for s in scenes[:300]
        for item in vqa_items(s, np.random.default_rng(s.image_id))
        for a in item.answers
    )
    assert answers["2"] > answers["two"] > 0
    assert answers["gray"] > answers["grey"] > 0


def _colours_and_shapes(text: str) -> set[tuple[str, str]]:
    words = [vocabulary.canonical_colour(w) or w for w in tokenize(text)]
    return {
        (a, b)
        for a, b in zip(words, words[1:], strict=False)
        if a in vocabulary.COLOURS and b in vocabulary.SHAPES
    }


def test_coco_captions_name_every_object(scenes: list[Scene]) -> None:
    for scene in scenes[:300]:
        captions = coco_captions(scene, np.random.default_rng(scene.image_id))
        assert len(captions) == 5 and len(set(captions)) >= 3
        truth = {(o.colour, o.shape) for o in scene.objects}
        for caption in captions:
            assert caption == caption.lower()
            assert _colours_and_shapes(caption) == truth, caption
    assert len(coco_captions(scenes[0], np.random.default_rng(0), n=7)) == 7


def test_pretrain_texts_cover_captions_and_every_question_kind(scenes: list[Scene]) -> None:
    question_kinds = set()
    for scene in scenes[:300]:
        pairs = pretrain_texts(scene, np.random.default_rng(scene.image_id))
        captions = [
            response for instruction, response in pairs if instruction == CAPTION_INSTRUCTION
        ]
        assert len(captions) == 2 and captions[0] != captions[1]
        for caption in captions:
            assert _colours_and_shapes(caption) == {(o.colour, o.shape) for o in scene.objects}
        for question, answer in pairs:
            if question != CAPTION_INSTRUCTION:
                assert answer == _truth(question, scene)
                question_kinds.add(question.split()[0] + " " + question.split()[1])
    assert {"what color", "what shape", "how many", "is there", "is the"} <= question_kinds


def test_downstream_style_differs_from_pretraining(scenes: list[Scene]) -> None:
    pretrain, downstream = set(), set()
    for scene in scenes[:300]:
        rng = np.random.default_rng(scene.image_id)
        pretrain |= {r for i, r in pretrain_texts(scene, rng) if i == CAPTION_INSTRUCTION}
        downstream |= set(coco_captions(scene, rng))
    openings = lambda texts, n: Counter(" ".join(t.split()[:n]) for t in texts)  # noqa: E731
    shared = set(openings(pretrain, 3)) & set(openings(downstream, 3))
    assert len(shared) < 0.05 * len(openings(downstream, 3))


def test_one_vocabulary_covers_both_distributions(scenes: list[Scene]) -> None:
    """Every token is in vocabulary_words(); every downstream token occurs in pre-training."""
    pretrain, downstream = Counter(), Counter()
    for scene in scenes:
        rng = np.random.default_rng([1, scene.image_id])
        for instruction, response in pretrain_texts(scene, rng):
            pretrain.update(tokenize(instruction) + tokenize(response))
        for caption in coco_captions(scene, rng):
            downstream.update(tokenize(caption))
        for item in vqa_items(scene, rng):
            downstream.update(tokenize(item.question))
            for answer in item.answers:
                downstream.update(tokenize(answer))
    words = vocabulary_words()
    assert words == sorted(set(words))
    assert all(word.isalnum() and word == word.lower() for word in words)
    assert set(pretrain) | set(downstream) <= set(words)
    assert set(downstream) <= set(pretrain), set(downstream) - set(pretrain)


def test_tokenize_drops_punctuation_and_case() -> None:
    assert tokenize("Is there a Red circle? yes: it's  here.") == [
        "is",
        "there",
        "a",
        "red",
        "circle",
        "yes",
        "it",
        "s",
        "here",
    ]
