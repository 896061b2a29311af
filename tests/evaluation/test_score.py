"""`ptpeft score`: official numbers from result files, one-line UserErrors for bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptpeft_cli.errors import UserError
from ptpeft_cli.evaluation.captioning import caption_scores_from_files
from ptpeft_cli.evaluation.score import score_caption_files, score_vqa_files
from ptpeft_cli.evaluation.vqa_accuracy import vqa_scores

from .conftest import PREDICTIONS, write_caption_files

VQA_ANSWERS = {
    1: (["yes"] * 10, "yes/no", "is the"),
    2: (["2"] * 3 + ["3"] * 7, "number", "how many"),
    3: (["red"] * 9 + ["dark red"], "other", "what color is the"),
}


def write_vqa_files(directory: Path, answers: dict[int, str]) -> tuple[Path, Path, Path]:
    """VQAv2 questions / annotations files and a result file, in the official layouts."""
    questions = {
        "info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014",
        "license": {},
        "questions": [{"image_id": 10 + q, "question": "?", "question_id": q} for q in VQA_ANSWERS],
    }  # fmt: skip
    annotations = {
        "info": {}, "data_type": "mscoco", "data_subtype": "val2014", "license": {},
        "annotations": [
            {
                "question_id": q, "image_id": 10 + q, "question_type": qtype, "answer_type": atype,
                "multiple_choice_answer": texts[0],
                "answers": [
                    {"answer": t, "answer_confidence": "yes", "answer_id": i + 1}
                    for i, t in enumerate(texts)
                ],
            }
            for q, (texts, atype, qtype) in VQA_ANSWERS.items()
        ],
    }  # fmt: skip
    results = [{"question_id": q, "answer": a} for q, a in answers.items()]
    paths = [directory / n for n in ("results.json", "annotations.json", "questions.json")]
    for path, data in zip(paths, (results, annotations, questions), strict=True):
        path.write_text(json.dumps(data))
    return paths[0], paths[1], paths[2]


def test_vqa_files_give_official_keys(tmp_path: Path) -> None:
    results, annotations, questions = write_vqa_files(tmp_path, {1: "Yes", 2: "two", 3: "red"})
    scores = score_vqa_files(results, annotations, questions)
    assert set(scores) == {"overall", "perAnswerType", "perQuestionType"}
    # q1: identical "yes" answers, "Yes" is not normalised -> 0; q2: 3 of 10 -> 90; q3: 9 of 10 -> 100
    assert scores["perAnswerType"] == {"yes/no": 0.0, "number": 90.0, "other": 100.0}
    assert scores["overall"] == 63.33
    annotation_list = json.loads(annotations.read_text())["annotations"]
    direct = vqa_scores({1: "Yes", 2: "two", 3: "red"}, annotation_list)
    assert scores == {key: direct[key] for key in scores}


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({1: "yes", 2: "2"}, r"1 annotated question\(s\) have no prediction \(e.g. 3\)"),
        (
            {1: "yes", 2: "2", 3: "red", 8: "x"},
            r"1 predicted question id\(s\) are not annotated \(e.g. 8\)",
        ),
    ],
)
def test_vqa_id_mismatch(tmp_path: Path, answers: dict[int, str], message: str) -> None:
    results, annotations, questions = write_vqa_files(tmp_path, answers)
    with pytest.raises(UserError, match=message) as caught:
        score_vqa_files(results, annotations, questions)
    assert str(results) in str(caught.value) and "\n" not in str(caught.value)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", "is not valid JSON"),
        ('{"question_id": 1, "answer": "yes"}', "must hold a list of objects"),
        ("[1, 2]", "entry 0 is not an object"),
        ('[{"question_id": 1}]', 'entry 0 has no "answer"'),
        ('[{"question_id": "1", "answer": "yes"}]', '"question_id" must be an integer'),
        ('[{"question_id": 1, "answer": 3}]', '"answer" must be a string'),
        (
            '[{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}]',
            "lists question_id 1 more than once",
        ),
    ],
)
def test_malformed_vqa_predictions(tmp_path: Path, content: str, message: str) -> None:
    _, annotations, questions = write_vqa_files(tmp_path, {})
    bad = _write(tmp_path / "bad.json", content)
    with pytest.raises(UserError, match=message) as caught:
        score_vqa_files(bad, annotations, questions)
    assert "predictions file" in str(caught.value) and str(bad) in str(caught.value)


def test_missing_files_are_named(tmp_path: Path) -> None:
    results, annotations, questions = write_vqa_files(tmp_path, {1: "yes", 2: "2", 3: "red"})
    with pytest.raises(UserError, match=r"predictions file not found: .*nope\.json"):
        score_vqa_files(tmp_path / "nope.json", annotations, questions)
    with pytest.raises(UserError, match=r"questions file not found"):
        score_vqa_files(results, annotations, tmp_path / "q.json")
    with pytest.raises(UserError, match=r"annotations file not found"):
        score_caption_files(write_caption_files(tmp_path)[0], tmp_path / "captions.json")


def test_malformed_vqa_annotation_and_question_files(tmp_path: Path) -> None:
    results, annotations, questions = write_vqa_files(tmp_path, {1: "yes", 2: "2", 3: "red"})
    bare_list = _write(tmp_path / "list.json", "[]")
    with pytest.raises(UserError, match='must be an object with a "annotations" list'):
        score_vqa_files(results, bare_list, questions)
    data = json.loads(annotations.read_text())
    del data["annotations"][1]["answer_type"]
    with pytest.raises(UserError, match='entry 1 has no "answer_type"'):
        score_vqa_files(results, _write(tmp_path / "a.json", json.dumps(data)), questions)
    data = json.loads(questions.read_text())
    data["questions"] = data["questions"][:2]
    with pytest.raises(UserError, match=r"lacks 1 annotated question\(s\) \(e.g. 3\)"):
        score_vqa_files(results, annotations, _write(tmp_path / "q.json", json.dumps(data)))


def test_caption_files_match_toolkit(tmp_path: Path) -> None:
    results, annotations = write_caption_files(tmp_path)
    scores = score_caption_files(results, annotations, meteor=False)
    assert scores == caption_scores_from_files(results, annotations, meteor=False)
    assert {"Bleu_4", "ROUGE_L", "CIDEr"} <= set(scores)


def test_caption_id_mismatch_and_duplicates(tmp_path: Path) -> None:
    results, annotations = write_caption_files(tmp_path, {**PREDICTIONS, 77: "a cat"})
    with pytest.raises(UserError, match=r"1 predicted image id\(s\) are not annotated \(e.g. 77\)"):
        score_caption_files(results, annotations, meteor=False)
    duplicated = [{"image_id": i, "caption": c} for i, c in PREDICTIONS.items()]
    duplicated.append({"image_id": 11, "caption": "again"})
    with pytest.raises(UserError, match="lists image_id 11 more than once"):
        score_caption_files(_write(tmp_path / "dup.json", json.dumps(duplicated)), annotations)


def test_caption_annotation_shape(tmp_path: Path) -> None:
    results, annotations = write_caption_files(tmp_path)
    data = json.loads(annotations.read_text())
    data["images"].append({"id": 99})
    with pytest.raises(UserError, match=r"1 image\(s\) have no reference caption \(e.g. 99\)"):
        score_caption_files(results, _write(tmp_path / "a.json", json.dumps(data)))
    del data["images"]
    with pytest.raises(UserError, match='must be an object with a "images" list'):
        score_caption_files(results, _write(tmp_path / "b.json", json.dumps(data)))
