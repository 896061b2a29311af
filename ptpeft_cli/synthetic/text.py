"""Text about scenes, from two distributions that share one vocabulary.

Pre-training text is broad (several caption styles, every question type, paraphrases); the
downstream tasks use a narrower, *different* caption style (COCO-like) and VQAv2-like questions
with ten human answers. Every downstream word also occurs in pre-training text, in other contexts:
a word the base model has never seen cannot be learnt by a prefix over a frozen model.
The captions of both styles are built in captions.py; the questions and answers here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ptpeft_cli.synthetic import vocabulary
from ptpeft_cli.synthetic.captions import Rng, indefinite_article, pick, pretrain_captions
from ptpeft_cli.synthetic.world import Scene, SceneObject

# Characters split off (and dropped) when counting words; the tokenizer keeps them as tokens.
PUNCTUATION = ".,?:'"
_SPLIT = re.compile(r"[\s.,?:']+")
CAPTION_INSTRUCTION = "caption"
# The instruction texts the tiny LMM is pre-trained with; conf/task/{captioning,vqa}.yaml default
# to the same strings, so the shipped model works zero-shot (a test keeps them equal).
CAPTION_PROMPT = "caption:"
VQA_PROMPT = "question: {question} answer:"
DIGITS: tuple[str, ...] = tuple(str(n) for n in vocabulary.NUMBER_WORDS)
_COLOUR_NAMES: tuple[str, ...] = tuple(vocabulary.COLOURS)
ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")

# Words the caption builders (captions.py) and answers emit besides the vocabulary constants and the question
# wordings, kept in one place so vocabulary_words() is complete (the tests check generated text).
_CAPTION_WORDS = (
    "a an and at background caption dark each image in is next no number object objects of on "
    "picture shape shapes shows single sitting the them there this to with yes"
)

_NOISE_PROBABILITY = 0.07  # fraction of human answers that are wrong
_SYNONYM_ANSWER_PROBABILITY = 0.25


def tokenize(text: str) -> list[str]:
    """Lower-case words with PUNCTUATION and whitespace removed (the unit vocabulary counts)."""
    return [token for token in _SPLIT.split(text.lower()) if token]


# ---- questions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """One question with its canonical answer (questions.py builds these too)."""

    text: str
    question_type: str
    answer_type: str
    answer: str
    wrong_answers: tuple[str, ...]  # what a careless annotator might say instead


# Question wordings: the first is the downstream (VQAv2-like) one, the others are paraphrases
# that only pre-training uses. {} is the object reference.
_COLOUR_WORDINGS = ("what color is the {}?", "what is the color of the {}?",
                    "which color does the {} have?")
_SHAPE_WORDINGS = ("what shape is the {} object?", "what is the shape of the {} object?",
                   "which shape is {}?")
_COUNT_WORDINGS = ("how many objects are there?", "how many shapes are in the image?",
                   "how many objects does the picture contain?")
_THERE_IS_WORDINGS = ("is there {}?", "does the image contain {}?", "is there {} in the picture?")
_LEFT_RIGHT_WORDINGS = ("is the {} on the left or the right?",
                        "is the {} on the left side or the right side?")
_TOP_BOTTOM_WORDINGS = ("is the {} at the top or the bottom?",
                        "is the {} at the top or at the bottom?")
_WORDINGS = (_COLOUR_WORDINGS, _SHAPE_WORDINGS, _COUNT_WORDINGS, _THERE_IS_WORDINGS,
             _LEFT_RIGHT_WORDINGS, _TOP_BOTTOM_WORDINGS)


def _wording(wordings: Sequence[str], rng: Rng, paraphrase: bool) -> str:
    return pick(rng, wordings[1:]) if paraphrase else wordings[0]


def _pick_unique(rng: Rng, scene: Scene, attribute: str) -> SceneObject | None:
    """An object whose `attribute` value no other object shares (None if there is none)."""
    values = [getattr(o, attribute) for o in scene.objects]
    candidates = [o for o in scene.objects if values.count(getattr(o, attribute)) == 1]
    return candidates[int(rng.integers(len(candidates)))] if candidates else None


def _colour_question(scene: Scene, rng: Rng, paraphrase: bool) -> Question | None:
    obj = _pick_unique(rng, scene, "shape")
    if obj is None:
        return None
    text = _wording(_COLOUR_WORDINGS, rng, paraphrase).format(obj.shape)
    wrong = tuple(c for c in vocabulary.COLOURS if c != obj.colour)
    return Question(text, "what color is the", "other", obj.colour, wrong)


def _shape_question(scene: Scene, rng: Rng, paraphrase: bool) -> Question | None:
    obj = _pick_unique(rng, scene, "colour")
    if obj is None:
        return None
    text = _wording(_SHAPE_WORDINGS, rng, paraphrase).format(obj.colour)
    wrong = tuple(s for s in vocabulary.SHAPES if s != obj.shape)
    return Question(text, "what shape is the", "other", obj.shape, wrong)


def _count_question(scene: Scene, rng: Rng, paraphrase: bool) -> Question:
    """How many objects, or how many of one colour / shape (sometimes an absent one: 0)."""
    kind = pick(rng, ("all", "colour", "shape"))
    if kind == "colour":
        colour = pick(rng, [o.colour for o in scene.objects] + [pick(rng, _COLOUR_NAMES)])
        count = sum(o.colour == colour for o in scene.objects)
        text = f"how many {colour} objects are there?"
    elif kind == "shape":
        shape = pick(rng, [o.shape for o in scene.objects] + [pick(rng, vocabulary.SHAPES)])
        count = sum(o.shape == shape for o in scene.objects)
        text = f"how many {vocabulary.SHAPE_PLURALS[shape]} are there?"
    else:
        count = len(scene.objects)
        text = _wording(_COUNT_WORDINGS, rng, paraphrase)
    wrong = tuple(str(c) for c in (count - 1, count + 1) if 0 <= c <= vocabulary.MAX_OBJECTS)
    return Question(text, "how many", "number", str(count), wrong)


def _yes_no_question(scene: Scene, rng: Rng, paraphrase: bool) -> Question:
    """Half the questions are answered yes (coin flip first, then a question that fits it)."""
    want_yes = bool(rng.random() < 0.5)
    answer, wrong = ("yes", ("no",)) if want_yes else ("no", ("yes",))
    obj = _pick_unique(rng, scene, "shape")
    if obj is not None and rng.random() < 0.3:  # "is the circle red?"
        others = [c for c in _COLOUR_NAMES if c != obj.colour]
        colour = obj.colour if want_yes else pick(rng, others)
        return Question(f"is the {obj.shape} {colour}?", "is the", "yes/no", answer, wrong)
    present = {(o.colour, o.shape) for o in scene.objects}
    if want_yes:
        colour, shape = sorted(present)[int(rng.integers(len(present)))]
    else:
        absent = [(c, s) for c in _COLOUR_NAMES for s in vocabulary.SHAPES if (c, s) not in present]
        # Prefer hard negatives that share a colour or a shape with something in the picture.
        hard = [(c, s) for c, s in absent if any(c == pc or s == ps for pc, ps in present)]
        pool = hard if hard and rng.random() < 0.6 else absent
        colour, shape = pool[int(rng.integers(len(pool)))]
    article = indefinite_article(colour)
    text = _wording(_THERE_IS_WORDINGS, rng, paraphrase).format(f"{article} {colour} {shape}")
    question_type = "is there a" if article == "a" else "is there"
    return Question(text, question_type, "yes/no", answer, wrong)


def _position_question(scene: Scene, rng: Rng, paraphrase: bool) -> Question | None:
    """Left-or-right / top-or-bottom, asked only about an object that is not in the middle."""
    options = [(o, "h") for o in scene.objects if o.horizontal != "middle"]
    options += [(o, "v") for o in scene.objects if o.vertical != "middle"]
    if not options:
        return None
    obj, axis = options[int(rng.integers(len(options)))]
    if axis == "h":
        answer, wrong = obj.horizontal, "right" if obj.horizontal == "left" else "left"
        wordings = _LEFT_RIGHT_WORDINGS
    else:
        answer, wrong = obj.vertical, "bottom" if obj.vertical == "top" else "top"
        wordings = _TOP_BOTTOM_WORDINGS
    text = _wording(wordings, rng, paraphrase).format(f"{obj.colour} {obj.shape}")
    return Question(text, "is the", "other", answer, (wrong,))


_QUESTION_BUILDERS = {"colour": _colour_question, "shape": _shape_question,
                      "count": _count_question, "yes/no": _yes_no_question,
                      "position": _position_question}
QUESTION_KINDS: tuple[str, ...] = tuple(_QUESTION_BUILDERS)


def _questions(scene: Scene, rng: Rng, paraphrase_probability: float) -> dict[str, Question]:
    """One question per kind that has an unambiguous answer in this scene."""
    built = {kind: build(scene, rng, bool(rng.random() < paraphrase_probability))
             for kind, build in _QUESTION_BUILDERS.items()}
    return {kind: q for kind, q in built.items() if q is not None}


# ---- public builders ------------------------------------------------------------------------


def pretrain_texts(scene: Scene, rng: Rng) -> list[tuple[str, str]]:
    """(instruction, response) pairs for one pre-training image: two captions in different
    pre-training styles, then one question of every kind the scene allows (short answers)."""
    pairs = [(CAPTION_INSTRUCTION, caption) for caption in pretrain_captions(scene, rng)]
    questions = _questions(scene, rng, paraphrase_probability=0.5)
    pairs += [(q.text, q.answer) for q in questions.values()]
    return pairs


@dataclass
class VQAItem:
    """One VQAv2-style question with its ten human answers."""

    question: str
    question_type: str
    answer_type: str
    answers: list[str]
    answer_confidences: list[str] = field(default_factory=list)  # "yes"|"maybe"|"no" per answer

    @property
    def multiple_choice_answer(self) -> str:
        """The most frequent human answer (VQAv2's definition; ties go to the first seen)."""
        return Counter(self.answers).most_common(1)[0][0]


def _answer_synonym(answer: str) -> str | None:
    if answer in DIGITS:
        return vocabulary.NUMBER_WORDS[int(answer)]
    return {v: k for k, v in vocabulary.COLOUR_SYNONYMS.items()}.get(answer)


def human_answers(question: Question, rng: Rng) -> tuple[list[str], list[str]]:
    """Ten answers: the canonical answer is always the majority (>= 5 of 10); up to 3 use a
    synonym ("two", "grey") and up to 2 are wrong, as careless annotators are."""
    n_wrong = min(int(rng.binomial(10, _NOISE_PROBABILITY)), 2)
    synonym = _answer_synonym(question.answer)
    n_synonym = min(int(rng.binomial(10 - n_wrong, _SYNONYM_ANSWER_PROBABILITY)), 3) if synonym else 0
    answers = [question.answer] * (10 - n_wrong - n_synonym) + [synonym or ""] * n_synonym
    answers += [pick(rng, question.wrong_answers) for _ in range(n_wrong)]
    confidences = ["yes" if rng.random() < 0.85 else "maybe" for _ in range(10 - n_wrong)]
    confidences += [pick(rng, ("maybe", "no")) for _ in range(n_wrong)]
    order = rng.permutation(10)
    return [answers[i] for i in order], [confidences[i] for i in order]


def vqa_items(scene: Scene, rng: Rng) -> list[VQAItem]:
    """3-5 VQAv2-style questions for one image: always a yes/no one, then a random subset of
    the other kinds the scene can answer unambiguously."""
    questions = _questions(scene, rng, paraphrase_probability=0.0)
    others = [kind for kind in QUESTION_KINDS if kind in questions and kind != "yes/no"]
    n_questions = int(rng.integers(3, 6))
    chosen = ["yes/no"] + [others[i] for i in rng.permutation(len(others))[: n_questions - 1]]
    items = []
    for kind in chosen:
        question = questions[kind]
        answers, confidences = human_answers(question, rng)
        items.append(VQAItem(question.text, question.question_type, question.answer_type,
                             answers, confidences))
    return items


def vocabulary_words() -> list[str]:
    """Every word any builder here can produce (see tokenize), sorted: the tokenizer's word list."""
    words = set(_CAPTION_WORDS.split())
    words.update(token for wordings in _WORDINGS for text in wordings
                 for token in tokenize(text.replace("{}", " ")))
    words.update(vocabulary.COLOURS, vocabulary.COLOUR_SYNONYMS, vocabulary.SHAPES)
    words.update(vocabulary.SHAPE_PLURALS.values(), vocabulary.SIZES, vocabulary.SIZE_SYNONYMS)
    words.update(vocabulary.HORIZONTAL, vocabulary.VERTICAL, vocabulary.NUMBER_WORDS.values(), DIGITS)
    return sorted(words)
