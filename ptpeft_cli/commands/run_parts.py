"""Pieces shared by `ptpeft train` and `ptpeft eval`: loaders, prediction, scoring, analysis,
and the run-dir files. Each takes plain objects so both commands compose them the same way."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from ptpeft_cli.data.collate import GenerationCollator, TeacherForcingCollator
from ptpeft_cli.data.tasks import TaskData, eval_references
from ptpeft_cli.evaluation.generation import generate_predictions
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.training.hardware import Hardware


def encode_fn(loaded: LoadedModel) -> Callable:
    return lambda images, prompts, targets: loaded.family.encode(loaded, images, prompts, targets)


def prompt_fn(loaded: LoadedModel, task: str) -> Callable[[str | None], str]:
    from ptpeft_cli.synthetic.text import (  # interim: tasks/ takes this over
        CAPTION_PROMPT,
        VQA_PROMPT,
    )

    return lambda question: loaded.family.prompt(CAPTION_PROMPT if question is None else VQA_PROMPT.format(question=question))


def train_loader(loaded: LoadedModel, data: TaskData, cfg: DictConfig) -> DataLoader:
    generator = torch.Generator().manual_seed(int(cfg.trainer.seed))
    return DataLoader(data.train, batch_size=cfg.trainer.batch_size, shuffle=True, drop_last=True,
                      generator=generator, num_workers=cfg.trainer.num_workers,
                      collate_fn=TeacherForcingCollator(encode_fn(loaded), prompt_fn(loaded, data.task)))


def eval_loader(loaded: LoadedModel, data: TaskData, cfg: DictConfig) -> DataLoader:
    return DataLoader(data.eval, batch_size=cfg.trainer.eval_batch_size, shuffle=False,
                      num_workers=cfg.trainer.num_workers,
                      collate_fn=GenerationCollator(encode_fn(loaded), prompt_fn(loaded, data.task)))


def analysis_batches(loaded: LoadedModel, data: TaskData, cfg: DictConfig, device: torch.device) -> list[dict]:
    """Teacher-forced eval batches (first reference caption / majority answer), built once so
    the base and the tuned model see identical rows."""
    rows = data.eval.map(
        lambda b: {"target": [c[0] for c in b["captions"]] if "captions" in b else b["multiple_choice_answer"]},
        batched=True,
    )
    loader = DataLoader(rows, batch_size=cfg.trainer.eval_batch_size, shuffle=False,
                        collate_fn=TeacherForcingCollator(encode_fn(loaded), prompt_fn(loaded, data.task)))
    return [{k: v.to(device) for k, v in batch.items()} for batch in loader]


def predict(loaded: LoadedModel, data: TaskData, cfg: DictConfig, hardware: Hardware) -> dict[int, str]:
    def generate(inputs: dict[str, torch.Tensor]) -> list[str]:
        return loaded.family.generate(loaded, inputs, max_new_tokens=cfg.task.max_new_tokens,
                                      num_beams=cfg.task.num_beams)

    return generate_predictions(eval_loader(loaded, data, cfg), generate, hardware.device, hardware.autocast)


def score(data: TaskData, predictions: dict[int, str], spice: bool, meteor: bool = True) -> dict[str, float]:
    """Flat `eval/*` metrics: official scorers on the whole eval split, plus grounding."""
    metrics: dict[str, float] = {}
    if data.task == "captioning":
        from ptpeft_cli.evaluation.captioning import caption_scores

        for key, value in caption_scores(predictions, eval_references(data), spice=spice, meteor=meteor).items():
            metrics[f"eval/{key}"] = float(value)
        if data.scenes is not None:
            from ptpeft_cli.synthetic.grounding import object_precision_recall

            for key, value in object_precision_recall(predictions, data.scenes).items():
                metrics[f"eval/{key}"] = float(value)
    else:
        from ptpeft_cli.evaluation.vqa_accuracy import vqa_scores

        annotations = json.loads(Path(data.annotation_files["annotations"]).read_text())["annotations"]
        wanted = set(predictions)
        result = vqa_scores(predictions, [a for a in annotations if a["question_id"] in wanted])
        metrics["eval/vqa_accuracy"] = float(result["overall"])
        for answer_type, value in result["perAnswerType"].items():
            metrics[f"eval/vqa_accuracy/{answer_type}"] = float(value)
        for question_type, value in result["perQuestionType"].items():
            metrics[f"eval/vqa_accuracy/type/{question_type}"] = float(value)
    return metrics


def official_predictions(task: str, predictions: dict[int, str]) -> list[dict[str, Any]]:
    """The official result format: what `ptpeft score` and the COCO/VQA tools read."""
    if task == "captioning":
        return [{"image_id": k, "caption": v} for k, v in sorted(predictions.items())]
    return [{"question_id": k, "answer": v} for k, v in sorted(predictions.items())]


def _finite(value: Any) -> Any:
    """Strict JSON has no NaN/inf (e.g. a ratio over a zero-rank base): write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write-then-rename, so a crash never leaves a truncated metrics/predictions file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(payload), indent=2, sort_keys=isinstance(payload, dict), allow_nan=False))
    os.replace(tmp, path)


class Stopwatch:
    """Wall-clock sections for the `time/*` metrics."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def section(self, name: str) -> _Section:
        return _Section(self, name)


class _Section:
    def __init__(self, watch: Stopwatch, name: str) -> None:
        self.watch, self.name = watch, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.watch.seconds[self.name] = self.watch.seconds.get(self.name, 0.0) + time.perf_counter() - self.start


def format_table(metrics: dict[str, Any], keys: list[str] | None = None) -> str:
    """A two-column plain-text summary for the end of a run."""
    keys = keys or sorted(metrics)
    width = max(len(k) for k in keys) if keys else 0
    lines = []
    for key in keys:
        value = metrics[key]
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<{width}}  {shown}")
    return "\n".join(lines)
