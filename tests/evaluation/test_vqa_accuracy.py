"""VQA accuracy on hand-made cases whose expected values are computed by hand below."""

from __future__ import annotations

import copy

import pytest

from ptpeft_cli.evaluation.vqa_accuracy import (
    normalize_answer,
    process_digit_article,
    process_punctuation,
    question_accuracy,
    round_half_away,
    vqa_scores,
)


def answers(*texts: str) -> list[dict]:
    """VQA answer records with distinct answer ids, as in the official annotation files."""
    return [
        {"answer": text, "answer_confidence": "yes", "answer_id": index + 1}
        for index, text in enumerate(texts)
    ]


def annotation(
    qid: int, texts: list[str], answer_type: str = "other", question_type: str = "what"
) -> dict:
    return {
        "question_id": qid,
        "image_id": qid,
        "answers": answers(*texts),
        "answer_type": answer_type,
        "question_type": question_type,
        "multiple_choice_answer": texts[0],
    }


def accuracy(predicted: str, texts: list[str]) -> float:
    """Per-question official score (0-100) of one prediction."""
    return vqa_scores({1: predicted}, [annotation(1, texts)])["perQuestion"][1]


@pytest.mark.parametrize(
    ("predicted", "texts", "expected"),
    [
        # Ten identical human answers: nothing is normalised, not even the prediction.
        ("2", ["two"] * 10, 0.0),
        ("two", ["two"] * 10, 100.0),
        ("dog", ["a dog"] * 10, 0.0),
        ("a dog", ["a dog"] * 10, 100.0),
        ("Yes", ["yes"] * 10, 0.0),
        (" yes\n", ["yes"] * 10, 100.0),  # newline/tab cleaning and strip always apply
        # Human answers differ: both sides are normalised.
        ("two", ["2"] * 9 + ["3"], 100.0),
        ("2", ["two"] * 5 + ["2"] * 5, 100.0),
        ("Two.", ["2"] * 9 + ["3"], 100.0),
        ("a dog", ["dog"] * 9 + ["cat"], 100.0),
        ("the dog", ["dog"] * 9 + ["cat"], 100.0),
        ("yes.", ["yes"] * 9 + ["no"], 100.0),
        ("it's", ["it's"] * 9 + ["no"], 100.0),  # the apostrophe is not in the punctuation list
        ("its", ["it's"] * 9 + ["no"], 0.0),
        ("dont", ["don't"] * 9 + ["no"], 100.0),
        ("none", ["0"] * 9 + ["1"], 100.0),
        ("1.5", ["1.5"] * 9 + ["2"], 100.0),
        ("15", ["1.5"] * 9 + ["2"], 0.0),
        ("1,000", ["1000"] * 9 + ["2"], 100.0),
    ],
)
def test_normalisation_cases(predicted: str, texts: list[str], expected: float) -> None:
    assert accuracy(predicted, texts) == expected


@pytest.mark.parametrize(
    ("matching", "expected"),
    [
        # k matching answers: held-out match (k subsets) leaves k-1, held-out non-match leaves k.
        (0, 0.0),
        (1, 30.0),  # (9 * 1/3 + 1 * 0) / 10
        (2, 60.0),  # (8 * 2/3 + 2 * 1/3) / 10
        (3, 90.0),  # (7 * 1 + 3 * 2/3) / 10, not 100
        (4, 100.0),  # every subset still holds >= 3 matches
        (10, 100.0),
    ],
)
def test_leave_one_out(matching: int, expected: float) -> None:
    assert accuracy("dog", ["dog"] * matching + ["cat"] * (10 - matching)) == expected


def test_question_accuracy_is_unrounded_fraction() -> None:
    assert question_accuracy("dog", answers(*(["dog"] * 2 + ["cat"] * 8))) == pytest.approx(0.6)


def test_punctuation_rules() -> None:
    assert process_punctuation("yes.") == "yes"
    assert process_punctuation("1.5") == "1.5"  # a period before a digit stays
    assert process_punctuation("5.") == "5"  # the look-behind was never one: trailing periods go
    assert process_punctuation("a.b") == "ab"
    assert process_punctuation("." * 40) == "." * 8  # re.UNICODE (32) lands in `count`
    assert process_punctuation("red/blue") == "red blue"  # not touching a space -> space
    assert process_punctuation("red / blue") == "red  blue"  # touching a space -> deleted
    assert process_punctuation("1,000 red/blue") == "1000 redblue"  # digit comma: all deleted
    assert process_punctuation("hello!") == "hello "
    assert process_punctuation("it's") == "it's"


def test_digit_article_rules() -> None:
    assert process_digit_article("The Two Dogs") == "2 dogs"
    assert process_digit_article("an apple a day") == "apple day"
    assert process_digit_article("dont know") == "don't know"
    assert process_digit_article("Im") == "im"  # keys with capitals never match lower-cased text
    assert normalize_answer("  Ten, the dogs!") == "10 dogs"


def test_aggregates_per_type_and_overall() -> None:
    annotations = [
        annotation(1, ["yes"] * 10, "yes/no", "is the"),
        annotation(2, ["2"] * 2 + ["3"] * 8, "number", "how many"),
        annotation(3, ["red"] * 1 + ["blue"] * 9, "other", "what color"),
        annotation(4, ["red"] * 3 + ["blue"] * 7, "other", "what color"),
    ]
    predictions = {1: "yes", 2: "two", 3: "red", 4: "red"}
    scores = vqa_scores(predictions, annotations)
    assert scores["perQuestion"] == {1: 100.0, 2: 60.0, 3: 30.0, 4: 90.0}
    assert scores["perAnswerType"] == {"yes/no": 100.0, "number": 60.0, "other": 60.0}
    assert scores["perQuestionType"] == {"is the": 100.0, "how many": 60.0, "what color": 60.0}
    assert scores["overall"] == 70.0  # (1 + 0.6 + 0.3 + 0.9) / 4


def test_overall_rounds_to_two_decimals() -> None:
    annotations = [
        annotation(1, ["a"] + ["b"] * 9),
        annotation(2, ["c"] * 10),
        annotation(3, ["d"] * 10),
    ]
    scores = vqa_scores({1: "x", 2: "c", 3: "x"}, annotations)
    assert scores["overall"] == 33.33  # 100 * 1/3


def test_python2_rounding() -> None:
    assert round_half_away(0.125) == 0.13  # exact tie: away from zero (Python 3 gives 0.12)
    assert round_half_away(2.675) == 2.67  # 2.675 is stored as 2.67499999...
    assert round_half_away(-0.125) == -0.13
    assert round_half_away(66.666666) == 66.67


def test_inputs_are_not_mutated() -> None:
    annotations = [annotation(1, ["Two!"] * 5 + ["2"] * 5)]
    before = copy.deepcopy(annotations)
    vqa_scores({1: "two"}, annotations)
    assert annotations == before


def test_question_ids_must_match_annotations() -> None:
    annotations = [annotation(1, ["yes"] * 10), annotation(2, ["no"] * 10)]
    with pytest.raises(
        ValueError, match=r"1 annotated question\(s\) have no prediction \(e.g. 2\)"
    ):
        vqa_scores({1: "yes"}, annotations)
    with pytest.raises(
        ValueError, match=r"1 predicted question id\(s\) are not annotated \(e.g. 7\)"
    ):
        vqa_scores({1: "yes", 2: "no", 7: "x"}, annotations)


def test_identical_answer_records_are_rejected() -> None:
    # Without answer ids the official leave-one-out would drop all equal records at once.
    bad = annotation(1, ["yes"] * 10)
    for record in bad["answers"]:
        del record["answer_id"], record["answer_confidence"]
    with pytest.raises(ValueError, match="answer_id"):
        vqa_scores({1: "yes"}, [bad])


def test_multiple_choice_answers_must_be_choices() -> None:
    questions = [{"question_id": 1, "question": "?", "multiple_choices": ["yes", "no"]}]
    assert vqa_scores({1: "yes"}, [annotation(1, ["yes"] * 10)], questions)["overall"] == 100.0
    with pytest.raises(ValueError, match="multiple choices"):
        vqa_scores({1: "maybe"}, [annotation(1, ["yes"] * 10)], questions)
