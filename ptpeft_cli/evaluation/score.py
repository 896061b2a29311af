"""``ptpeft score``: official metrics of a result file, with one-line errors for bad inputs.

The official tools stop on an ``assert`` or a ``KeyError`` when a file is malformed or does not
match the annotation set; here every such problem becomes a ``UserError`` that names the file
and what is wrong, checked before any (slow, Java-backed) scoring starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptpeft_cli.errors import UserError
from ptpeft_cli.evaluation.captioning import caption_scores_from_files, image_id_mismatch_message
from ptpeft_cli.evaluation.vqa_accuracy import question_id_mismatch_message, vqa_scores


def _load_json(path: Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{what} file {path} is not valid JSON: {error}") from error


def _type_name(kind: type) -> str:
    return {int: "an integer", str: "a string", list: "a list", dict: "an object"}[kind]


def _records(data: Any, keys: dict[str, type], where: str) -> list[dict[str, Any]]:
    """Check that ``data`` is a list of objects holding ``keys`` with the given JSON types;
    ``where`` names the place in the user's files ("predictions file x.json")."""
    shape = "a list of objects with " + ", ".join(f'"{key}"' for key in keys)
    if not isinstance(data, list):
        raise UserError(f"{where} must hold {shape}; found {type(data).__name__}")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise UserError(f"{where}: entry {index} is not an object ({shape} expected)")
        for key, kind in keys.items():
            if key not in record:
                raise UserError(f'{where}: entry {index} has no "{key}" ({shape} expected)')
            value = record[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise UserError(
                    f'{where}: entry {index} "{key}" must be {_type_name(kind)}, got {value!r}'
                )
    return data


def _section(data: Any, key: str, where: str) -> Any:
    """The list under ``key`` of an official JSON file whose top level is an object."""
    if not isinstance(data, dict) or key not in data:
        raise UserError(f'{where} must be an object with a "{key}" list')
    return data[key]


def _unique_ids(records: list[dict[str, Any]], key: str, where: str) -> list[int]:
    ids = [record[key] for record in records]
    seen: set[int] = set()
    for value in ids:
        if value in seen:
            raise UserError(f"{where} lists {key} {value} more than once")
        seen.add(value)
    return ids


def _check_same_ids(
    predicted: list[int],
    annotated: list[int],
    where: str,
    message: Callable[[list[int], list[int]], str],
) -> None:
    known_annotated, known_predicted = set(annotated), set(predicted)
    missing = [i for i in annotated if i not in known_predicted]
    extra = [i for i in predicted if i not in known_annotated]
    if missing or extra:
        raise UserError(f"{where}: {message(missing, extra)}")


def score_vqa_files(predictions: Path, annotations: Path, questions: Path) -> dict:
    """Official VQA accuracy of a result file ``[{"question_id", "answer"}]`` against VQAv2
    annotation and question files. Returns ``{"overall", "perAnswerType", "perQuestionType"}``."""
    results_data = _load_json(predictions, "predictions")
    annotations_data = _load_json(annotations, "annotations")
    questions_data = _load_json(questions, "questions")
    at_results = f"predictions file {predictions}"
    at_annotations = f"annotations file {annotations}"
    at_questions = f"questions file {questions}"

    results = _records(results_data, {"question_id": int, "answer": str}, at_results)
    predicted_ids = _unique_ids(results, "question_id", at_results)
    annotation_records = _records(
        _section(annotations_data, "annotations", at_annotations),
        {"question_id": int, "answers": list, "question_type": str, "answer_type": str},
        at_annotations,
    )
    for record in annotation_records:
        where = f"{at_annotations} (answers of question {record['question_id']})"
        _records(record["answers"], {"answer": str}, where)
    annotated_ids = _unique_ids(annotation_records, "question_id", at_annotations)
    question_records = _records(
        _section(questions_data, "questions", at_questions), {"question_id": int}, at_questions
    )
    asked = {record["question_id"] for record in question_records}
    unasked = [qid for qid in annotated_ids if qid not in asked]
    if unasked:
        raise UserError(
            f"{at_questions} lacks {len(unasked)} annotated question(s) (e.g. {unasked[0]}): "
            "are the annotation and question files of the same split?"
        )
    _check_same_ids(predicted_ids, annotated_ids, at_results, question_id_mismatch_message)
    answers = {record["question_id"]: record["answer"] for record in results}
    try:
        scores = vqa_scores(answers, annotation_records, question_records)
    except ValueError as error:
        raise UserError(f"cannot score {predictions} against {annotations}: {error}") from error
    return {key: scores[key] for key in ("overall", "perAnswerType", "perQuestionType")}


def score_caption_files(
    predictions: Path, annotations: Path, spice: bool = False, meteor: bool = True
) -> dict:
    """Official COCO caption metrics of a result file ``[{"image_id", "caption"}]`` against a
    COCO caption annotation file. Returns the pycocoevalcap keys (Bleu_1..4, METEOR unless
    ``meteor=False``, ROUGE_L, CIDEr, SPICE when ``spice=True``)."""
    results_data = _load_json(predictions, "predictions")
    annotations_data = _load_json(annotations, "annotations")
    at_results = f"predictions file {predictions}"
    at_annotations = f"annotations file {annotations}"

    results = _records(results_data, {"image_id": int, "caption": str}, at_results)
    predicted_ids = _unique_ids(results, "image_id", at_results)
    images = _records(
        _section(annotations_data, "images", at_annotations),
        {"id": int},
        f"{at_annotations} (images)",
    )
    references = _records(
        _section(annotations_data, "annotations", at_annotations),
        {"id": int, "image_id": int, "caption": str},
        at_annotations,
    )
    image_ids = _unique_ids(images, "id", f"{at_annotations} (images)")
    captioned = {record["image_id"] for record in references}
    uncaptioned = [i for i in image_ids if i not in captioned]
    if uncaptioned:
        raise UserError(
            f"{at_annotations}: {len(uncaptioned)} image(s) have no reference caption "
            f"(e.g. {uncaptioned[0]})"
        )
    _check_same_ids(predicted_ids, image_ids, at_results, image_id_mismatch_message)
    return caption_scores_from_files(predictions, annotations, spice=spice, meteor=meteor)
