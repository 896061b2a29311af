"""Official metrics (VQA accuracy, COCO caption metrics), scene grounding and file scoring.

``load_metric`` (the same metrics as `evaluate` modules) lives in
``ptpeft_cli.evaluation.metrics``, apart, because importing `evaluate` costs seconds.
"""

from ptpeft_cli.evaluation.captioning import caption_scores, caption_scores_from_files
from ptpeft_cli.evaluation.grounding import caption_mentions, object_precision_recall
from ptpeft_cli.evaluation.score import score_caption_files, score_vqa_files
from ptpeft_cli.evaluation.vqa_accuracy import normalize_answer, vqa_scores

__all__ = [
    "caption_mentions",
    "caption_scores",
    "caption_scores_from_files",
    "normalize_answer",
    "object_precision_recall",
    "score_caption_files",
    "score_vqa_files",
    "vqa_scores",
]
