"""Image captioning, scored with pycocoevalcap (BLEU, METEOR, ROUGE-L, CIDEr; SPICE on request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from ptpeft_cli.data.sources import DataSource
from ptpeft_cli.tasks.base import Task, TaskData


class CaptioningTask(Task):
    name = "captioning"
    data_format = "captions"
    id_key, answer_key = "image_id", "caption"
    headline_metric = "eval/CIDEr"
    reference_column = "captions"
    report_columns = (("eval/CIDEr", "CIDEr"), ("eval/Bleu_4", "BLEU-4"), ("eval/METEOR", "METEOR"),
                      ("eval/ROUGE_L", "ROUGE-L"), ("eval/object_precision", "obj. prec."))

    def read(self, source: DataSource, split: str, limit: int | None) -> datasets.Dataset:
        return source.captions(split, limit)

    def training_rows(self, batch: dict[str, list]) -> dict[str, list]:
        """One row per (image, reference caption): the COCO fine-tuning convention."""
        rows: dict[str, list] = {"image": [], "question": [], "target": []}
        for image, captions in zip(batch["image"], batch["captions"], strict=True):
            rows["image"] += [image] * len(captions)
            rows["question"] += [None] * len(captions)
            rows["target"] += list(captions)
        return rows

    def eval_rows(self, batch: dict[str, list]) -> dict[str, list]:
        return {"example_id": batch["image_id"], "question": [None] * len(batch["image_id"]),
                "target": [captions[0] for captions in batch["captions"]]}

    def start_scorers(self) -> None:
        """METEOR's Java process takes ~10 s of one core to load its tables; started here it
        loads while the run writes/reads data and builds the model (mostly one core busy)."""
        if self.cfg.meteor:
            from ptpeft_cli.evaluation.captioning import start_meteor

            start_meteor()

    def score(self, data: TaskData, predictions: dict[int, str]) -> dict[str, float]:
        """pycocoevalcap against the split's reference captions, plus whatever grounded caption
        metrics the source can compute (the synthetic world knows each image's objects)."""
        from ptpeft_cli.evaluation.captioning import caption_scores

        references = dict(zip(data.eval["example_id"], data.eval["captions"], strict=True))
        scores = caption_scores(predictions, references, spice=bool(self.cfg.spice), meteor=bool(self.cfg.meteor))
        scores.update(data.source.grounded_caption_metrics(data.eval_split, predictions))
        return {f"eval/{key}": float(value) for key, value in scores.items()}

    def score_files(self, predictions: Path, annotations: Path, questions: Path | None) -> dict[str, Any]:
        from ptpeft_cli.evaluation.score import score_caption_files

        return score_caption_files(predictions, annotations, spice=bool(self.cfg.spice), meteor=bool(self.cfg.meteor))
