"""`ptpeft score` through the real console entry: last stdout line is the official JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptpeft_cli.cli import main


def _vqa_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    questions = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {},
                 "data_subtype": "val2014",
                 "questions": [{"image_id": 1, "question": "how many circles are there?", "question_id": 10},
                               {"image_id": 1, "question": "is there a red square?", "question_id": 11}]}
    answers = lambda words: [{"answer": w, "answer_confidence": "yes", "answer_id": i + 1}  # noqa: E731
                             for i, w in enumerate(words)]
    annotations = {"info": {}, "license": {}, "data_subtype": "val2014", "annotations": [
        {"question_id": 10, "image_id": 1, "question_type": "how many", "answer_type": "number",
         "multiple_choice_answer": "2", "answers": answers(["2"] * 7 + ["two"] * 2 + ["3"])},
        {"question_id": 11, "image_id": 1, "question_type": "is there a", "answer_type": "yes/no",
         "multiple_choice_answer": "yes", "answers": answers(["yes"] * 10)}]}
    paths = tmp_path / "q.json", tmp_path / "a.json", tmp_path / "r.json"
    paths[0].write_text(json.dumps(questions))
    paths[1].write_text(json.dumps(annotations))
    paths[2].write_text(json.dumps([{"question_id": 10, "answer": "two"}, {"question_id": 11, "answer": "no"}]))
    return paths


def test_score_vqa_prints_official_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    questions, annotations, results = _vqa_files(tmp_path)
    main(["score", "task=vqa", f"predictions={results}", f"annotations={annotations}", f"questions={questions}"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # q10: answers differ -> "two" normalises to "2": 9 of 10 humans say 2 -> 100; q11: "no" -> 0.
    assert result["overall"] == 50.0
    assert result["perAnswerType"] == {"number": 100.0, "yes/no": 0.0}
    assert set(result) == {"overall", "perAnswerType", "perQuestionType"}


@pytest.mark.parametrize("problem", ["missing", "malformed", "extra_id"])
def test_score_bad_input_exit_2(problem: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    questions, annotations, results = _vqa_files(tmp_path)
    if problem == "missing":
        results = tmp_path / "nope.json"
    elif problem == "malformed":
        results.write_text("[{")
    else:
        results.write_text(json.dumps([{"question_id": 10, "answer": "2"}, {"question_id": 11, "answer": "yes"},
                                       {"question_id": 99, "answer": "yes"}]))
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "task=vqa", f"predictions={results}", f"annotations={annotations}",
              f"questions={questions}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(results.name) in err
