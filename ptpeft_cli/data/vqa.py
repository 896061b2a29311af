"""Loader for VQAv2 question/annotation files in their official format (real or synthetic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from ptpeft_cli.data.coco import check_images, lazy_image_dataset, read_json, require_keys
from ptpeft_cli.errors import MissingData, UserError

PATTERN_FIELDS = ("image_id", "split", "data_subtype")


def _image_path(image_root: Path, image_pattern: str, image_id: int, split: str, data_subtype: str) -> str:
    try:
        relative = image_pattern.format(image_id=image_id, split=split, data_subtype=data_subtype)
    except (KeyError, IndexError, ValueError) as error:
        raise UserError(
            f"image_pattern {image_pattern!r} is invalid ({error!r}); it may use "
            f"{{image_id}} (e.g. {{image_id:012d}}), {{split}} (the file's data_subtype) and "
            f"{{data_subtype}} (the COCO image set, e.g. val2014)"
        ) from error
    return str(Path(image_root) / relative)


def _annotations_by_question(annotations_json: Path) -> dict[int, dict[str, Any]]:
    data = read_json(annotations_json, "VQA annotations")
    require_keys(data, ("annotations",), annotations_json, "the top level")
    by_question = {}
    for annotation in data["annotations"]:
        require_keys(
            annotation,
            ("question_id", "answers", "multiple_choice_answer", "answer_type", "question_type"),
            annotations_json,
            "an annotation",
        )
        by_question[int(annotation["question_id"])] = annotation
    return by_question


def load_vqa(
    questions_json: Path,
    annotations_json: Path | None,
    image_root: Path,
    image_pattern: str,
    limit: int | None = None,
    image_subtype: str | None = None,
) -> datasets.Dataset:
    """The first `limit` questions, in file order, with lazily decoded images.

    Columns: question_id, image_id, question, image; with annotations also answers (the ten
    human answers), multiple_choice_answer, answer_type, question_type. The image path is
    image_root / image_pattern.format(image_id=..., split=<the file's data_subtype>,
    data_subtype=<image_subtype, default the file's>), e.g. "COCO_{data_subtype}_{image_id:012d}.jpg"
    in val2014/ for real VQAv2. `image_subtype` exists because test-dev2015 questions ask about
    test2015 images.
    """
    questions_json = Path(questions_json)
    data = read_json(questions_json, "VQA questions")
    require_keys(data, ("questions",), questions_json, "the top level")
    split = str(data.get("data_subtype", ""))
    image_subtype = image_subtype or split
    if not data["questions"]:
        raise MissingData(f"{questions_json} holds no questions")
    annotations = _annotations_by_question(Path(annotations_json)) if annotations_json else None

    columns: dict[str, list[Any]] = {"question_id": [], "image_id": [], "question": [], "image": []}
    if annotations is not None:
        columns.update(answers=[], multiple_choice_answer=[], answer_type=[], question_type=[])
    for question in data["questions"][:limit]:
        require_keys(
            question, ("question_id", "image_id", "question"), questions_json, "a question"
        )
        question_id, image_id = int(question["question_id"]), int(question["image_id"])
        columns["question_id"].append(question_id)
        columns["image_id"].append(image_id)
        columns["question"].append(str(question["question"]))
        columns["image"].append(_image_path(image_root, image_pattern, image_id, split, image_subtype))
        if annotations is None:
            continue
        annotation = annotations.get(question_id)
        if annotation is None:
            raise UserError(
                f"{annotations_json}: no annotation for question_id {question_id} "
                f"of {questions_json}"
            )
        columns["answers"].append([str(answer["answer"]) for answer in annotation["answers"]])
        columns["multiple_choice_answer"].append(str(annotation["multiple_choice_answer"]))
        columns["answer_type"].append(str(annotation["answer_type"]))
        columns["question_type"].append(str(annotation["question_type"]))
    check_images(columns["image"], f"image directory {image_root}, image_pattern={image_pattern!r}")

    features: dict[str, Any] = {
        "question_id": datasets.Value("int64"),
        "image_id": datasets.Value("int64"),
        "question": datasets.Value("string"),
    }
    if annotations is not None:
        features.update(
            answers=datasets.List(datasets.Value("string")),
            multiple_choice_answer=datasets.Value("string"),
            answer_type=datasets.Value("string"),
            question_type=datasets.Value("string"),
        )
    return lazy_image_dataset(columns, features)
