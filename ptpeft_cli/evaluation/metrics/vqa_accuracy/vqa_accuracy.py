"""`evaluate` module: official VQA accuracy (GT-Vision-Lab/VQA algorithm), usable offline.

Load it by path (``ptpeft_cli.evaluation.metrics.load_metric("vqa_accuracy")``): the Hub copy
of community VQA metrics cannot be fetched here, and this one shares its code with
``ptpeft_cli.evaluation.vqa_accuracy.vqa_scores`` so both give identical numbers.
"""

import datasets
import evaluate

from ptpeft_cli.evaluation.vqa_accuracy import vqa_scores

_DESCRIPTION = """VQA accuracy as computed by the official VQAv2 evaluation: per question the mean,
over the 10 leave-one-out subsets of human answers, of min(1, matches / 3), after the official
answer normalisation; averaged overall, per answer type and per question type (0-100, 2 decimals).
"""

_CITATION = """@inproceedings{antol2015vqa,
  title={{VQA}: Visual Question Answering},
  author={Antol, Stanislaw and Agrawal, Aishwarya and Lu, Jiasen and Mitchell, Margaret and
          Batra, Dhruv and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={ICCV}, year={2015}}
"""

_INPUTS = """
Args:
    predictions: list of {"question_id": int, "answer": str}.
    references: list of {"question_id": int, "answers": list[str] (the human answers, usually 10),
        "answer_type": str, "question_type": str}; the same question ids as predictions.
Returns:
    {"overall": float, "perAnswerType": {type: float}, "perQuestionType": {type: float},
     "perQuestion": {question_id: float}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class VqaAccuracy(evaluate.Metric):
    """Official VQA accuracy over question records (struct features keep ids and types with
    each answer, so ``add_batch`` works across batches)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": {
                        "question_id": datasets.Value("int64"),
                        "answer": datasets.Value("string"),
                    },
                    "references": {
                        "question_id": datasets.Value("int64"),
                        "answers": datasets.Sequence(datasets.Value("string")),
                        "answer_type": datasets.Value("string"),
                        "question_type": datasets.Value("string"),
                    },
                }
            ),
            reference_urls=["https://github.com/GT-Vision-Lab/VQA"],
        )

    def _compute(self, predictions: list[dict], references: list[dict]) -> dict:
        annotations = [
            {
                "question_id": ref["question_id"],
                # Distinct answer ids: the official leave-one-out tells records apart by them.
                "answers": [
                    {"answer": answer, "answer_id": index + 1}
                    for index, answer in enumerate(ref["answers"])
                ],
                "answer_type": ref["answer_type"],
                "question_type": ref["question_type"],
            }
            for ref in references
        ]
        answers = {pred["question_id"]: pred["answer"] for pred in predictions}
        return vqa_scores(answers, annotations)
