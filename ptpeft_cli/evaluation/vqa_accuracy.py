"""VQA accuracy, reproducing the official GT-Vision-Lab/VQA evaluation (vqaEval.py, master).

Written anew (the official tool is Python 2 and needs its own file-backed VQA objects), but
it follows the official algorithm step by step, quirks included, so numbers are comparable
with published VQAv2 results:

- Answers are cleaned of newlines/tabs and stripped. Only when the human answers of a question
  are NOT all identical are the human answers and the predicted answer normalised
  (punctuation, then digits/articles/contractions); with 10 identical answers the prediction
  must match the raw human answer exactly.
- Punctuation: a mark is deleted when it touches a space or the text has a comma between
  digits, otherwise it becomes a space. The period regex was meant to keep decimal points
  but its look-behind is written as a look-ahead, so every period not followed by a digit is
  deleted ("1.5" keeps its period, "yes." loses it); it also receives ``re.UNICODE`` (32) in
  the place of ``count``, so at most 32 periods are removed.
- Accuracy of a question: the mean over the 10 leave-one-out subsets of the other 9 answers
  of min(1, matches / 3). Averages are plain left-to-right sums and Python 2 rounding
  (half away from zero) to 2 decimals on a 0-100 scale.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

# "word=replacement" pairs of the official contractions table (keys with capitals can never
# match because text is lower-cased first; kept for fidelity, as is "somebody'd=somebodyd").
_CONTRACTION_PAIRS = """
    'ow'sat='ow's'at 'ows'at='ow's'at I'dve=I'd've Id've=I'd've Im=I'm Ive=I've aint=ain't
    arent=aren't cant=can't couldn'tve=couldn't've couldnt=couldn't couldnt've=couldn't've
    couldve=could've didnt=didn't doesnt=doesn't dont=don't hadn'tve=hadn't've hadnt=hadn't
    hadnt've=hadn't've hasnt=hasn't havent=haven't he'dve=he'd've hed=he'd hed've=he'd've
    hes=he's howd=how'd howll=how'll hows=how's isnt=isn't it'dve=it'd've itd=it'd
    itd've=it'd've itll=it'll let's=let's maam=ma'am mightn'tve=mightn't've mightnt=mightn't
    mightnt've=mightn't've mightve=might've mustnt=mustn't mustve=must've neednt=needn't
    notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at shant=shan't she'dve=she'd've
    she's=she's shed've=she'd've shouldn'tve=shouldn't've shouldnt=shouldn't
    shouldnt've=shouldn't've shouldve=should've somebody'd=somebodyd somebody'dve=somebody'd've
    somebodyd've=somebody'd've somebodyll=somebody'll somebodys=somebody's
    someone'dve=someone'd've someoned=someone'd someoned've=someone'd've someonell=someone'll
    someones=someone's something'dve=something'd've somethingd=something'd
    somethingd've=something'd've somethingll=something'll thats=that's there'dve=there'd've
    thered=there'd thered've=there'd've therere=there're theres=there's they'dve=they'd've
    theyd=they'd theyd've=they'd've theyll=they'll theyre=they're theyve=they've twas='twas
    wasnt=wasn't we'dve=we'd've wed've=we'd've werent=weren't weve=we've whatll=what'll
    whatre=what're whats=what's whatve=what've whens=when's whered=where'd wheres=where's
    whereve=where've who'dve=who'd've whod=who'd whod've=who'd've wholl=who'll whos=who's
    whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldn'tve=wouldn't've
    wouldnt=wouldn't wouldnt've=wouldn't've wouldve=would've y'all'dve=y'all'd've
    y'alld've=y'all'd've y'allll=y'all'll yall=y'all yall'd've=y'all'd've yall'll=y'all'll
    you'dve=you'd've youd=you'd youd've=you'd've youll=you'll youre=you're youve=you've
"""
CONTRACTIONS: dict[str, str] = {
    word: replacement
    for word, replacement in (pair.split("=", 1) for pair in _CONTRACTION_PAIRS.split())
}
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip
# re.ASCII: the official Python 2 patterns were byte strings applied to unicode text, where
# \d only matches 0-9.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)", re.ASCII)
_MAX_PERIODS_STRIPPED = int(re.UNICODE)  # the official call passes re.UNICODE as `count`


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``: delete or space out punctuation, strip periods."""
    has_digit_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        # The test looks at the original text, the replacement acts on the running result.
        if mark + " " in text or " " + mark in text or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out, count=_MAX_PERIODS_STRIPPED)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, number words to digits, drop articles,
    restore apostrophes of known contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(answer: str) -> str:
    """Full normalisation applied to an answer when a question's human answers disagree."""
    return process_digit_article(process_punctuation(answer))


def _clean_whitespace(answer: str) -> str:
    return answer.replace("\n", " ").replace("\t", " ").strip()


def round_half_away(value: float, digits: int = 2) -> float:
    """Python 2's ``round`` (the official tool's): exact binary value, ties away from zero.

    Python 3 rounds ties to even (round(0.125, 2) == 0.12 where Python 2 gave 0.13).
    """
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP))


def _plain_sum(values: list[float]) -> float:
    """Left-to-right float sum, as Python 2's ``sum``; Python >= 3.12's ``sum`` compensates
    rounding errors and could move a result across a rounding boundary."""
    total = 0.0
    for value in values:
        total += value
    return total


def _mean_percent(values: list[float]) -> float:
    return round_half_away(100 * _plain_sum(values) / len(values))


def question_accuracy(predicted: str, human_answers: list[dict[str, Any]]) -> float:
    """Accuracy in [0, 1] of one predicted answer against the human answer records.

    ``human_answers`` are VQA answer records (``{"answer", "answer_id", ...}``). The official
    leave-one-out drops every record *equal* to the held-out one; records are told apart by
    their ``answer_id``, so fully identical records (no ``answer_id``) would be dropped
    together and distort the score: they are rejected instead.
    """
    records = [dict(record) for record in human_answers]
    for index, record in enumerate(records):
        if record in records[index + 1 :]:
            raise ValueError(
                f"identical human answer records {record!r}: give each one a distinct 'answer_id'"
            )
    for record in records:
        record["answer"] = _clean_whitespace(record["answer"])
    predicted = _clean_whitespace(predicted)
    if len({record["answer"] for record in records}) > 1:
        for record in records:
            record["answer"] = normalize_answer(record["answer"])
        predicted = normalize_answer(predicted)
    subset_accuracies: list[float] = []
    for held_out in records:
        matches = sum(1 for r in records if r != held_out and r["answer"] == predicted)
        subset_accuracies.append(min(1.0, matches / 3))
    return _plain_sum(subset_accuracies) / len(subset_accuracies)


def _check_question_ids(predictions: dict[int, str], annotation_ids: list[int]) -> None:
    missing = [qid for qid in annotation_ids if qid not in predictions]
    known = set(annotation_ids)
    extra = [qid for qid in predictions if qid not in known]
    if missing or extra:
        raise ValueError(question_id_mismatch_message(missing, extra))


def question_id_mismatch_message(missing: list[int], extra: list[int]) -> str:
    """One line saying how the predicted question ids differ from the annotated ones."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} annotated question(s) have no prediction (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} predicted question id(s) are not annotated (e.g. {extra[0]})")
    return "predictions do not match the annotation set: " + "; ".join(parts)


def vqa_scores(
    predictions: dict[int, str],
    annotations: list[dict],
    questions: list[dict] | None = None,
) -> dict:
    """Official VQA accuracy of ``predictions`` (question_id -> answer) on ``annotations``
    (the VQAv2 ``annotations`` list).

    Like the official tool, the predictions must cover exactly the annotated questions
    (``ValueError`` otherwise). ``questions`` (the VQA ``questions`` list) is optional; when
    its entries carry ``multiple_choices`` (VQA v1 multiple-choice task) each answer must be
    one of them, as the official result loader asserts.

    Returns ``{"overall", "perAnswerType", "perQuestionType", "perQuestion"}`` on a 0-100
    scale rounded to 2 decimals (``perQuestion`` is the official ``evalQA``).
    """
    if not annotations:
        raise ValueError("no annotated questions to score")
    annotation_ids = [annotation["question_id"] for annotation in annotations]
    if len(set(annotation_ids)) != len(annotation_ids):
        raise ValueError("annotations list the same question_id more than once")
    _check_question_ids(predictions, annotation_ids)
    if questions is not None:
        choices = {
            q["question_id"]: q["multiple_choices"] for q in questions if "multiple_choices" in q
        }
        for qid, answer in predictions.items():
            if qid in choices and answer not in choices[qid]:
                raise ValueError(
                    f"question {qid}: answer {answer!r} is not one of its multiple choices"
                )

    overall: list[float] = []
    per_answer_type: dict[str, list[float]] = {}
    per_question_type: dict[str, list[float]] = {}
    per_question: dict[int, float] = {}
    for annotation in annotations:
        qid = annotation["question_id"]
        accuracy = question_accuracy(predictions[qid], annotation["answers"])
        overall.append(accuracy)
        per_question_type.setdefault(annotation["question_type"], []).append(accuracy)
        per_answer_type.setdefault(annotation["answer_type"], []).append(accuracy)
        per_question[qid] = round_half_away(100 * accuracy)
    return {
        "overall": _mean_percent(overall),
        "perAnswerType": {k: _mean_percent(v) for k, v in per_answer_type.items()},
        "perQuestionType": {k: _mean_percent(v) for k, v in per_question_type.items()},
        "perQuestion": per_question,
    }
