"""From a task config to the splits a run needs, read through the official-format loaders.

The synthetic world is written (once, cached) in the official COCO-caption / VQAv2 formats, so
`kind=synthetic` and the real datasets take the same path from here on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from ptpeft_cli.errors import UserError

PromptFn = Callable[[str, "str | None"], str]


@dataclass
class TaskData:
    """Everything a run reads from disk for one task."""

    task: str
    train: datasets.Dataset  # rows: image, question (None for captioning), target
    eval: datasets.Dataset  # rows: example_id, image, question
    # Official annotation files of the eval split, for scoring exactly like `ptpeft score`.
    annotation_files: dict[str, str] = field(default_factory=dict)
    scenes: dict[int, Any] | None = None  # synthetic world only: grounded metrics

    @property
    def id_key(self) -> str:
        return "image_id" if self.task == "captioning" else "question_id"


def _require(path: str | None, what: str, split: str | None = None) -> Path:
    """A real dataset file; `{split}` in the configured path is filled with the split's name, so
    one option names the train and the eval file (VQAv2 ships one file per split)."""
    if not path:
        raise UserError(f"task.dataset.{what} must be set for a real dataset")
    resolved = Path(path.replace("{split}", split) if split else path)
    if not resolved.exists():
        raise UserError(f"task.dataset.{what}={resolved} does not exist")
    return resolved


def _synthetic_paths(dataset_cfg: Any) -> Any:
    from ptpeft_cli.synthetic.writer import WorldSpec, ensure_world

    spec = WorldSpec(seed=dataset_cfg.seed, image_size=dataset_cfg.image_size,
                     n_pretrain=dataset_cfg.n_pretrain, n_train=dataset_cfg.n_train,
                     n_val=dataset_cfg.n_val, n_test=dataset_cfg.n_test)
    return ensure_world(Path(dataset_cfg.root), spec)


def _caption_split(dataset_cfg: Any, split: str, limit: int | None) -> tuple[datasets.Dataset, dict[str, str]]:
    from ptpeft_cli.data.coco import load_karpathy_captions

    if dataset_cfg.kind == "synthetic":
        paths = _synthetic_paths(dataset_cfg)
        data = load_karpathy_captions(paths.karpathy_json, paths.root, split, limit=limit)
        return data, {"annotations": str(paths.caption_annotations(split))}
    karpathy = _require(dataset_cfg.karpathy_json, "karpathy_json")
    image_root = _require(dataset_cfg.image_root, "image_root")
    data = load_karpathy_captions(karpathy, image_root, split, limit=limit)
    files = {"annotations": str(_require(dataset_cfg.annotations, "annotations", split))} if dataset_cfg.annotations else {}
    return data, files


def _vqa_split(dataset_cfg: Any, split: str, limit: int | None) -> tuple[datasets.Dataset, dict[str, str]]:
    from ptpeft_cli.data.vqa import load_vqa

    if dataset_cfg.kind == "synthetic":
        paths = _synthetic_paths(dataset_cfg)
        questions, annotations = paths.vqa_questions(split), paths.vqa_annotations(split)
        pattern = paths.image_pattern(split)
        image_root = paths.root
    else:
        questions = _require(dataset_cfg.questions, "questions", split)
        annotations = _require(dataset_cfg.annotations, "annotations", split)
        image_root = _require(dataset_cfg.image_root, "image_root", split)
        pattern = dataset_cfg.image_pattern or "COCO_val2014_{image_id:012d}.jpg"
    data = load_vqa(questions, annotations, image_root, pattern, limit=limit)
    return data, {"questions": str(questions), "annotations": str(annotations)}


def _flatten_captions(batch: dict[str, list]) -> dict[str, list]:
    """One training row per (image, reference caption): the COCO fine-tuning convention."""
    out: dict[str, list] = {"image": [], "question": [], "target": []}
    for image, captions in zip(batch["image"], batch["captions"], strict=True):
        for caption in captions:
            out["image"].append(image)
            out["question"].append(None)
            out["target"].append(caption)
    return out


def _vqa_targets(batch: dict[str, list]) -> dict[str, list]:
    return {"image": batch["image"], "question": batch["question"], "target": batch["multiple_choice_answer"]}


def load_task_data(task_cfg: Any) -> TaskData:
    """Train rows (flattened, cached by `datasets.map`) and eval rows for `task_cfg`."""
    dataset_cfg = task_cfg.dataset
    if task_cfg.name == "captioning":
        train, _ = _caption_split(dataset_cfg, task_cfg.train_split, task_cfg.train_limit)
        evaluation, files = _caption_split(dataset_cfg, task_cfg.eval_split, task_cfg.eval_limit)
        train = train.map(_flatten_captions, batched=True, remove_columns=train.column_names)
        evaluation = evaluation.map(lambda b: {"example_id": b["image_id"], "question": [None] * len(b["image_id"])},
                                    batched=True)
    else:
        train, _ = _vqa_split(dataset_cfg, task_cfg.train_split, task_cfg.train_limit)
        evaluation, files = _vqa_split(dataset_cfg, task_cfg.eval_split, task_cfg.eval_limit)
        train = train.map(_vqa_targets, batched=True, remove_columns=train.column_names)
        evaluation = evaluation.map(lambda b: {"example_id": b["question_id"]}, batched=True)
    scenes = None
    if dataset_cfg.kind == "synthetic":
        from ptpeft_cli.synthetic.scenes import load_scenes

        scenes = load_scenes(_synthetic_paths(dataset_cfg).scenes_json)
    return TaskData(task=task_cfg.name, train=train, eval=evaluation, annotation_files=files, scenes=scenes)


def eval_references(data: TaskData) -> dict[int, list[str]]:
    """Reference captions per eval image, read from the official annotation file."""
    annotations = json.loads(Path(data.annotation_files["annotations"]).read_text())
    wanted = set(data.eval["example_id"])
    refs: dict[int, list[str]] = {}
    for ann in annotations["annotations"]:
        if ann["image_id"] in wanted:
            refs.setdefault(ann["image_id"], []).append(ann["caption"])
    return refs
