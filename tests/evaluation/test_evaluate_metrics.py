"""The local `evaluate` modules load offline by path and equal the plain functions."""

from __future__ import annotations

import pytest

from ptpeft_cli.errors import UserError
from ptpeft_cli.evaluation.captioning import caption_scores
from ptpeft_cli.evaluation.metrics import load_metric
from ptpeft_cli.evaluation.vqa_accuracy import vqa_scores

from .conftest import PREDICTIONS, REFERENCES

VQA_REFERENCES = [
    {"question_id": 1, "answers": ["yes"] * 10, "answer_type": "yes/no", "question_type": "is the"},
    {
        "question_id": 2,
        "answers": ["2"] * 2 + ["3"] * 8,
        "answer_type": "number",
        "question_type": "how many",
    },
    {
        "question_id": 3,
        "answers": ["red"] * 4 + ["pink"] * 6,
        "answer_type": "other",
        "question_type": "what",
    },
]
VQA_PREDICTIONS = [
    {"question_id": 1, "answer": "yes"},
    {"question_id": 2, "answer": "two"},
    {"question_id": 3, "answer": "the red"},
]


def test_vqa_module_equals_function() -> None:
    metric = load_metric("vqa_accuracy", keep_in_memory=True)
    result = metric.compute(predictions=VQA_PREDICTIONS, references=VQA_REFERENCES)
    annotations = [
        {
            **ref,
            "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(ref["answers"])],
        }
        for ref in VQA_REFERENCES
    ]
    expected = vqa_scores({p["question_id"]: p["answer"] for p in VQA_PREDICTIONS}, annotations)
    assert result == expected
    assert result["perQuestion"] == {1: 100.0, 2: 60.0, 3: 100.0}

    # add_batch keeps ids and types with each answer across batches.
    metric.add_batch(predictions=VQA_PREDICTIONS[:2], references=VQA_REFERENCES[:2])
    metric.add_batch(predictions=VQA_PREDICTIONS[2:], references=VQA_REFERENCES[2:])
    assert metric.compute() == expected


def test_caption_module_equals_function() -> None:
    metric = load_metric("coco_caption", keep_in_memory=True)
    image_ids = list(REFERENCES)
    result = metric.compute(
        predictions=[PREDICTIONS[i] for i in image_ids],
        references=[REFERENCES[i] for i in image_ids],
        meteor=False,
    )
    assert result == caption_scores(PREDICTIONS, REFERENCES, meteor=False)


def test_unknown_metric_name() -> None:
    with pytest.raises(UserError, match="choose one of coco_caption, vqa_accuracy"):
        load_metric("bleu")
