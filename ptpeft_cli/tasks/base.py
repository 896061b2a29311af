"""The Task contract: everything that differs between tasks, owned in one object.

A task reads its splits through a dataset source (synthetic world, official files, ...), turns
rows into (image, question, target) training examples, supplies the instruction the model family
wraps in its prompt format, writes the official result format, scores predictions with the
official metric, and names its headline metric and report columns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import datasets

from ptpeft_cli.data.image_cache import ImageStore
from ptpeft_cli.data.sources import DataSource
from ptpeft_cli.errors import UserError
from ptpeft_cli.tasks.sources import get_source


@dataclass
class TaskData:
    """A task's splits as a run reads them: training rows and evaluation rows."""

    train: datasets.Dataset  # image, question (None for captioning), target
    eval: datasets.Dataset  # example_id, image, question, target (teacher forcing) + references
    source: DataSource
    eval_split: str
    # Set when the rows carry `image_index` into processed images instead of the images
    # (training/batches.py `with_cached_images`); None: collators decode `image` per batch.
    images: ImageStore | None = None


class Task(ABC):
    """One downstream task. Subclasses set the class attributes and the abstract methods."""

    name: ClassVar[str]
    # The kind of examples a dataset source must serve (DataSource.formats).
    data_format: ClassVar[str]
    # The official result format: [{id_key: ..., answer_key: ...}].
    id_key: ClassVar[str]
    answer_key: ClassVar[str]
    headline_metric: ClassVar[str]
    # The eval column holding the references; a split without it (VQAv2 test-dev) is not scored here.
    reference_column: ClassVar[str]
    # (metrics.json key, column title) of the task's own columns in reports, headline first.
    report_columns: ClassVar[tuple[tuple[str, str], ...]]

    def __init__(self, cfg: Any, instructions: Any = None) -> None:
        self.cfg = cfg
        override = dict(instructions or {}).get(self.name)
        # An empty override is a real choice (GIT captions from an empty prompt).
        self.instruction_template: str = str(cfg.instruction if override is None else override)

    # --- what the model is asked ------------------------------------------------------------
    def instruction(self, question: str | None) -> str:
        """The words of the request (question filled in); the family adds its prompt format."""
        return self.instruction_template.format(question=question)

    # --- data ---------------------------------------------------------------------------------
    def source(self) -> DataSource:
        source = get_source(self.cfg.dataset)
        if self.data_format not in source.formats:
            raise UserError(
                f"task={self.name} needs a dataset with {self.data_format}; "
                f"task.dataset.kind={source.kind} provides {', '.join(sorted(source.formats))}"
            )
        return source

    def load(self) -> TaskData:
        """Training rows (one per target) and evaluation rows, built with cached `datasets.map`."""
        source = self.source()
        eval_split = str(self.cfg.eval_split or source.default_eval_split)
        # The (smaller) eval split first: a split the source cannot serve fails before train is read.
        evaluation = self.read(source, eval_split, self.cfg.eval_limit)
        train = self.read(source, str(self.cfg.train_split), self.cfg.train_limit)
        if len(train) == 0 or len(evaluation) == 0:
            empty = self.cfg.train_split if len(train) == 0 else eval_split
            raise UserError(f"task={self.name}: split {empty!r} of task.dataset.kind={source.kind} is empty")
        train = train.map(self.training_rows, batched=True, remove_columns=train.column_names)
        evaluation = evaluation.map(self.eval_rows, batched=True)
        return TaskData(train=train, eval=evaluation, source=source, eval_split=eval_split)

    @abstractmethod
    def read(self, source: DataSource, split: str, limit: int | None) -> datasets.Dataset:
        """The split's examples in the source's format for this task."""

    @abstractmethod
    def training_rows(self, batch: dict[str, list]) -> dict[str, list]:
        """Batched map: examples -> rows of image, question, target."""

    @abstractmethod
    def eval_rows(self, batch: dict[str, list]) -> dict[str, list]:
        """Batched map adding example_id, question and a teacher-forcing target (analysis)."""

    # --- judging ------------------------------------------------------------------------------
    def start_scorers(self) -> None:
        """Start slow scorer resources now, in the background, so they are ready when the run
        scores (a run calls this first). Default: nothing to start."""
        return None

    @abstractmethod
    def score(self, data: TaskData, predictions: dict[int, str]) -> dict[str, float]:
        """Flat `eval/*` metrics of predictions (example_id -> text) on the whole eval split."""

    def evaluate(self, data: TaskData, predictions: dict[int, str]) -> dict[str, float]:
        """`score` where the eval split has references; else only `eval/scored=0`: server splits
        (VQAv2 test-dev / test-std) ship questions without answers, and their predictions go to
        the evaluation server in the file `server_file` names."""
        if self.reference_column not in data.eval.column_names:
            return {"eval/scored": 0}
        return self.score(data, predictions)

    def server_file(self, data: TaskData) -> str:
        """The result file name an evaluation server expects for the eval split."""
        return f"{self.name}_{data.source.official_split(data.eval_split)}_results.json"

    @abstractmethod
    def score_files(self, predictions: Path, annotations: Path, questions: Path | None) -> dict[str, Any]:
        """`ptpeft score`: an official result file against official annotation files."""

    def result_file(self, predictions: dict[int, str]) -> list[dict[str, Any]]:
        """The official result format, read by `ptpeft score` and the COCO / VQA tools."""
        return [{self.id_key: k, self.answer_key: v} for k, v in sorted(predictions.items())]
