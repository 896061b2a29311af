"""DataLoaders for a (model family, task) pair: the task's words in the family's prompt format,
tokenised by the family's `encode`; and evaluation of a loaded model on a task's eval split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

from ptpeft_cli.data.collate import EncodeFn, GenerationCollator, TeacherForcingCollator
from ptpeft_cli.evaluation.generation import predict
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.tasks.base import Task, TaskData
from ptpeft_cli.training.loop import ResumableRandomSampler


def prompt_fn(loaded: LoadedModel, task: Task) -> Callable[[str | None], str]:
    return lambda question: loaded.family.prompt(task.instruction(question))


def encode_fn(loaded: LoadedModel) -> EncodeFn:
    return lambda images, prompts, targets: loaded.family.encode(loaded, images, prompts, targets)


def train_loader(loaded: LoadedModel, task: Task, data: TaskData, trainer: Any) -> DataLoader:
    """Shuffled from a generator seeded by `trainer.seed`, so the data order repeats exactly (and a
    checkpoint can record and restore the position: ResumableRandomSampler)."""
    generator = torch.Generator().manual_seed(int(trainer.seed))
    return DataLoader(data.train, batch_size=trainer.batch_size, sampler=ResumableRandomSampler(len(data.train), generator),
                      drop_last=True, generator=generator, num_workers=trainer.num_workers,
                      collate_fn=TeacherForcingCollator(encode_fn(loaded), prompt_fn(loaded, task)))


def eval_loader(loaded: LoadedModel, task: Task, data: TaskData, trainer: Any) -> DataLoader:
    return DataLoader(data.eval, batch_size=trainer.eval_batch_size, shuffle=False,
                      num_workers=trainer.num_workers,
                      collate_fn=GenerationCollator(encode_fn(loaded), prompt_fn(loaded, task)))


def teacher_forced_eval_batches(loaded: LoadedModel, task: Task, data: TaskData, trainer: Any,
                                device: torch.device) -> list[dict[str, torch.Tensor]]:
    """The eval split with its teacher-forcing targets, built once so that the base and the tuned
    model of the representation analysis see identical rows."""
    loader = DataLoader(data.eval, batch_size=trainer.eval_batch_size, shuffle=False,
                        collate_fn=TeacherForcingCollator(encode_fn(loaded), prompt_fn(loaded, task)))
    return [{k: v.to(device) for k, v in batch.items()} for batch in loader]


def predict_task(loaded: LoadedModel, task: Task, data: TaskData, cfg: Any, hardware: Any) -> dict[int, str]:
    """example_id -> generated text on the task's eval split, with the run's generation options."""
    return predict(loaded, eval_loader(loaded, task, data, cfg.trainer), cfg.task.max_new_tokens, cfg.task.num_beams,
                   hardware.device, hardware.autocast)


def evaluate_on_task(loaded: LoadedModel, task: Task, data: TaskData, cfg: Any,
                     hardware: Any) -> tuple[dict[int, str], dict[str, float]]:
    """(predictions, `eval/*` metrics) of a loaded model on a task's eval split, as a run makes them."""
    predictions = predict_task(loaded, task, data, cfg, hardware)
    return predictions, task.evaluate(data, predictions)
