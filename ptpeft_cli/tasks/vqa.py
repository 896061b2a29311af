"""Open-ended VQA, scored with the official VQAv2 accuracy (overall, per answer and question type)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from ptpeft_cli.data.sources import DataSource
from ptpeft_cli.errors import UserError
from ptpeft_cli.tasks.base import Task, TaskData


class VqaTask(Task):
    name = "vqa"
    data_format = "questions"
    id_key, answer_key = "question_id", "answer"
    headline_metric = "eval/vqa_accuracy"
    reference_column = "answers"
    report_columns = (("eval/vqa_accuracy", "VQA acc."), ("eval/vqa_accuracy/yes/no", "yes/no"),
                      ("eval/vqa_accuracy/number", "number"), ("eval/vqa_accuracy/other", "other"))

    def read(self, source: DataSource, split: str, limit: int | None) -> datasets.Dataset:
        return source.questions(split, limit)

    def training_rows(self, batch: dict[str, list]) -> dict[str, list]:
        if "multiple_choice_answer" not in batch:
            raise UserError(f"task=vqa: split {self.cfg.train_split!r} has no answers to train on")
        return {"image": batch["image"], "question": batch["question"], "target": batch["multiple_choice_answer"]}

    def eval_rows(self, batch: dict[str, list]) -> dict[str, list]:
        targets = batch.get("multiple_choice_answer") or [""] * len(batch["question_id"])
        return {"example_id": batch["question_id"], "target": targets}

    def score(self, data: TaskData, predictions: dict[int, str]) -> dict[str, float]:
        """The official accuracy, from the annotations the eval rows carry (the VQAv2 fields)."""
        from ptpeft_cli.evaluation.vqa_accuracy import vqa_scores

        columns = data.eval.select_columns(["example_id", "answers", "answer_type", "question_type"])
        annotations = [{"question_id": row["example_id"], "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(row["answers"])],
                        "answer_type": row["answer_type"], "question_type": row["question_type"]}
                       for row in columns]
        result = vqa_scores(predictions, annotations)
        metrics = {"eval/vqa_accuracy": float(result["overall"])}
        metrics.update({f"eval/vqa_accuracy/{k}": float(v) for k, v in result["perAnswerType"].items()})
        metrics.update({f"eval/vqa_accuracy/type/{k}": float(v) for k, v in result["perQuestionType"].items()})
        return metrics

    def server_file(self, data: TaskData) -> str:
        """The VQA challenge's name: vqa_[task_type]_[dataset]_[datasubset]_[alg_name]_results.json."""
        return f"vqa_OpenEnded_mscoco_{data.source.official_split(data.eval_split)}_ptpeft_results.json"

    def score_files(self, predictions: Path, annotations: Path, questions: Path | None) -> dict[str, Any]:
        from ptpeft_cli.evaluation.score import score_vqa_files

        if questions is None:
            raise UserError("ptpeft score task=vqa needs questions=<VQAv2 questions JSON>")
        return score_vqa_files(predictions, annotations, questions)
