"""Compositional downstream questions: correct, well-defined, in the shipped vocabulary, and
absent from a pre-training corpus that itself has not changed by a byte."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter

import numpy as np
import pytest
from tokenizers import Tokenizer

from ptpeft_cli.models.tiny_llava import shipped_checkpoint_dir
from ptpeft_cli.synthetic import vocabulary
from ptpeft_cli.synthetic.captions import coco_captions
from ptpeft_cli.synthetic.questions import (
    COMPOSITIONAL_KINDS,
    KIND_PATTERNS,
    NEW_PHRASES,
    RELATION_MARGIN,
    compositional_items,
    question_kind,
)
from ptpeft_cli.synthetic.text import (
    ANSWER_TYPES,
    VQAItem,
    pretrain_texts,
    tokenize,
    vqa_items,
)
from ptpeft_cli.synthetic.world import Scene, SceneObject, sample_scene

# sha256 of the texts of 200 scenes, computed with text.py before questions.py existed (commit
# e95b87b). The shipped checkpoint was pre-trained on pretrain_texts: if it changed, the
# checkpoint would no longer match its corpus. The second digest pins the pre-training-kind
# downstream items (the retention probe), which must stay the questions the model was probed on.
PRETRAIN_TEXTS_SHA256 = "74c254278902e5bade3b7ba1999a5b2146bb0584ca6821d500c37cf91dcba60e"
DOWNSTREAM_PRETRAIN_KINDS_SHA256 = (
    "3b126e87bb607143ae5b088774b61b0575310f4b05a82e59e240bfbe8f61f51e")


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return [sample_scene(np.random.default_rng([6, i]), i) for i in range(1500)]


@pytest.fixture(scope="module")
def items(scenes: list[Scene]) -> list[tuple[Scene, VQAItem]]:
    return [(scene, item) for scene in scenes
            for item in compositional_items(scene, np.random.default_rng([2, scene.image_id]))]


def _find(scene: Scene, name: str) -> SceneObject:
    colour, shape = name.split()
    (obj,) = [o for o in scene.objects if (o.colour, o.shape) == (colour, shape)]
    return obj


def _side_of(obj: SceneObject, ref: SceneObject) -> str:
    """'left' / 'right' of ref, asserting the relation is unambiguous to a person."""
    assert abs(obj.x - ref.x) >= RELATION_MARGIN, "ambiguous horizontal relation"
    return "left" if obj.x < ref.x else "right"


def _truth(question: str, scene: Scene) -> str:
    """Answer from the scene, independently of questions.py's builders."""
    objs, obj = scene.objects, r"(\w+ \w+)"
    relation = rf"what (color|shape) is the (?:shape|object) to the (left|right) of the {obj}\?"
    if m := re.fullmatch(relation, question):
        ref = _find(scene, m[3])
        (target,) = [o for o in objs if o is not ref and _side_of(o, ref) == m[2]]
        assert all(o is ref or abs(o.x - ref.x) >= RELATION_MARGIN for o in objs)
        return target.colour if m[1] == "color" else target.shape
    if m := re.fullmatch(rf"how many objects are to the (left|right) of the {obj}\?", question):
        ref = _find(scene, m[2])
        assert len(objs) >= 2
        return str(sum(_side_of(o, ref) == m[1] for o in objs if o is not ref))
    if m := re.fullmatch(rf"is the {obj} to the (left|right) of the {obj}\?", question):
        return "yes" if _side_of(_find(scene, m[1]), _find(scene, m[3])) == m[2] else "no"
    if m := re.fullmatch(r"what (color|shape) is the (large|small) object\?", question):
        assert len(objs) >= 2
        (target,) = [o for o in objs if o.size == m[2]]
        return target.colour if m[1] == "color" else target.shape
    if m := re.fullmatch(r"how many (large|small) objects are there\?", question):
        return str(sum(o.size == m[1] for o in objs))
    raise AssertionError(f"unexpected question: {question!r}")


def test_answers_are_correct_well_defined_and_human_like(
        items: list[tuple[Scene, VQAItem]]) -> None:
    kinds, answer_types, yes_no, noisy = Counter(), Counter(), Counter(), 0
    for scene, item in items:
        truth = _truth(item.question, scene)
        assert item.multiple_choice_answer == truth
        assert item.answers.count(truth) >= 5 and len(item.answers) == 10
        assert set(item.answer_confidences) <= {"yes", "maybe", "no"}
        assert len(item.answer_confidences) == 10
        assert item.question.startswith(item.question_type)
        assert item.answer_type in ANSWER_TYPES
        assert item.answer_type == ("yes/no" if truth in ("yes", "no")
                                    else "number" if truth.isdigit() else "other")
        synonyms = {truth, vocabulary.NUMBER_WORDS[int(truth)] if truth.isdigit() else truth}
        synonyms |= {w for w, c in vocabulary.COLOUR_SYNONYMS.items() if c == truth}
        noisy += sum(a not in synonyms for a in item.answers)
        kinds[question_kind(item.question)] += 1
        answer_types[item.answer_type] += 1
        if item.answer_type == "yes/no":
            yes_no[truth] += 1
    assert set(kinds) == set(COMPOSITIONAL_KINDS), kinds
    assert min(kinds.values()) > 0.05 * len(items)
    assert set(answer_types) == set(ANSWER_TYPES)
    assert 0.4 <= yes_no["yes"] / sum(yes_no.values()) <= 0.6
    assert 0.02 <= noisy / (10 * len(items)) <= 0.12


def test_every_image_gets_distinct_questions(scenes: list[Scene]) -> None:
    for scene in scenes[:500]:
        items = compositional_items(scene, np.random.default_rng([2, scene.image_id]))
        assert 1 <= len(items) <= 5
        assert len({item.question for item in items}) == len(items)
        assert len({question_kind(item.question) for item in items}) == len(items)


def test_no_answer_dominates_a_kind(items: list[tuple[Scene, VQAItem]]) -> None:
    """A fine-tuned model must look at the image: no kind is mostly one answer."""
    answers: dict[str, Counter] = {}
    for _, item in items:
        kind = str(question_kind(item.question))
        answers.setdefault(kind, Counter())[item.multiple_choice_answer] += 1
    for kind, counts in answers.items():
        assert counts.most_common(1)[0][1] < 0.55 * sum(counts.values()), (kind, counts)


def test_relations_skip_ambiguous_scenes() -> None:
    """Two objects nearly above each other: no left/right question is asked about them."""
    a = SceneObject("circle", "red", "small", 0.50, 0.2)
    b = SceneObject("square", "blue", "large", 0.50 + RELATION_MARGIN / 2, 0.8)
    for seed in range(50):
        for item in compositional_items(Scene(1, (a, b), "plain"), np.random.default_rng(seed)):
            assert not str(question_kind(item.question)).startswith("relation"), item.question


def test_every_word_is_in_the_shipped_tokenizer(items: list[tuple[Scene, VQAItem]]) -> None:
    """New text may only use the shipped word-level vocabulary: an unknown word becomes UNK."""
    tokenizer = Tokenizer.from_file(str(shipped_checkpoint_dir("tiny_llava") / "tokenizer.json"))
    unk = tokenizer.token_to_id("<unk>")
    texts = {item.question for _, item in items} | {a for _, item in items for a in item.answers}
    for text in texts:
        assert unk not in tokenizer.encode(text).ids, text


def _pretrain_corpus(scenes: list[Scene]) -> list[tuple[str, str]]:
    return [pair for scene in scenes
            for pair in pretrain_texts(scene, np.random.default_rng([1, scene.image_id]))]


def test_pretraining_corpus_never_asks_the_new_kinds(
        scenes: list[Scene], items: list[tuple[Scene, VQAItem]]) -> None:
    corpus = _pretrain_corpus(scenes)
    for instruction, response in corpus:
        for text in (instruction, response):
            assert question_kind(text) is None, text
            assert not any(p.search(text) for p in KIND_PATTERNS.values()), text
            assert not any(phrase in text for phrase in NEW_PHRASES), text
    instructions = {instruction for instruction, _ in corpus}
    assert not instructions & {item.question for _, item in items}


def test_new_words_are_familiar_from_pretraining(
        scenes: list[Scene], items: list[tuple[Scene, VQAItem]]) -> None:
    """Stricter than the tokenizer: each word was *seen* in pre-training, in other contexts."""
    pretrain = {w for pair in _pretrain_corpus(scenes) for text in pair for w in tokenize(text)}
    downstream = {w for _, item in items for text in (item.question, *item.answers)
                  for w in tokenize(text)}
    assert downstream <= pretrain, downstream - pretrain


def test_pretraining_corpus_and_pretrain_kind_items_are_unchanged() -> None:
    pretrain, downstream = hashlib.sha256(), hashlib.sha256()
    for i in range(200):
        rng = np.random.default_rng([11, i])
        pretrain.update(json.dumps(pretrain_texts(sample_scene(rng, i), rng)).encode())
        rng = np.random.default_rng([12, i])
        scene = sample_scene(rng, i)
        texts = [coco_captions(scene, rng), [vars(x) for x in vqa_items(scene, rng)]]
        downstream.update(json.dumps(texts).encode())
    assert pretrain.hexdigest() == PRETRAIN_TEXTS_SHA256
    assert downstream.hexdigest() == DOWNSTREAM_PRETRAIN_KINDS_SHA256
