"""The official COCO 2014 / Karpathy / VQAv2 layouts as dataset sources: one directory key each.

    task.dataset.kind=coco_karpathy task.dataset.root=DIR   DIR/dataset_coco.json, DIR/train2014/, DIR/val2014/
    task.dataset.kind=vqav2 task.dataset.root=DIR           DIR/v2_OpenEnded_mscoco_{train,val}2014_questions.json,
                                                            DIR/v2_mscoco_{train,val}2014_annotations.json;
                                                            images in task.dataset.image_root (default DIR)
                                                            /train2014/, /val2014/ (test2015/ for test-dev)

Any single file can be pointed elsewhere per split (`task.dataset.files.<split>.questions=...`,
`.annotations`, `.images`) with plain paths, because brace templates in a path are a Hydra
grammar error unless doubly quoted. Whatever is missing is reported before training, with the
`scripts/fetch_data.py` command that fetches it (see docs/data.md).
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any

import datasets

from ptpeft_cli.data.coco import load_karpathy_captions
from ptpeft_cli.data.sources import DataSource, fetch_hint, require_path
from ptpeft_cli.data.vqa import load_vqa
from ptpeft_cli.errors import UserError

FETCH = "python scripts/fetch_data.py"
KARPATHY_FILE = "dataset_coco.json"
VQAV2_QUESTIONS = "v2_OpenEnded_mscoco_{subtype}_questions.json"
VQAV2_ANNOTATIONS = "v2_mscoco_{subtype}_annotations.json"
COCO_IMAGE_PATTERN = "COCO_{data_subtype}_{image_id:012d}.jpg"
# VQAv2 split -> (data_subtype of its question/annotation files, COCO image set it asks about).
VQAV2_SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train2014", "train2014"),
    "val": ("val2014", "val2014"),
    "test-dev": ("test-dev2015", "test2015"),
    "test": ("test2015", "test2015"),
}
# Splits the evaluation server scores: their official files carry questions only.
SERVER_SPLITS = ("test-dev", "test")


def _origin(key: str, value: Any) -> str:
    return f"task.dataset.{key}={value}"


def image_root(cfg: Any) -> tuple[Path, str]:
    """Where the COCO image folders (train2014/, val2014/, test2015/) are: image_root, else root."""
    key = "image_root" if cfg.get("image_root") else "root"
    return Path(str(cfg[key])), _origin(key, cfg[key])


class KarpathyCaptions(DataSource):
    """COCO captions through the Karpathy split file: `restval` joins train (`use_restval`), val
    and test are evaluated from the same file, whose sentences are the references."""

    kind = "coco_karpathy"
    formats = frozenset({"captions"})

    def published_rows(self, split: str) -> int | None:
        """Images (one eval row each) of the Karpathy split's val and test."""
        return {"val": 5000, "test": 5000}.get(split)

    def captions(self, split: str, limit: int | None) -> datasets.Dataset:
        cfg = self.cfg
        if cfg.get("karpathy_json"):
            karpathy, origin = Path(str(cfg.karpathy_json)), _origin("karpathy_json", cfg.karpathy_json)
        else:
            karpathy, origin = Path(str(cfg.root)) / KARPATHY_FILE, _origin("root", cfg.root)
        images, images_origin = image_root(cfg)
        with fetch_hint(f"{FETCH} karpathy --root {karpathy.parent}", images=f"{FETCH} coco --root {images}"):
            require_path(karpathy, "Karpathy split file", origin)
            require_path(images, "COCO image directory", images_origin, images=True)
            return load_karpathy_captions(karpathy, images, split, limit=limit, use_restval=bool(cfg.use_restval))


class Vqav2Questions(DataSource):
    """VQAv2 question / annotation files per split and the COCO images they ask about.

    Trains on train and evaluates on val; `train_on_val` also trains on val except `heldout`
    questions (whole images, so no image is both trained and evaluated on), which become the
    val split. test-dev / test have no annotations: the task writes a server result file.
    """

    kind = "vqav2"
    formats = frozenset({"questions"})
    default_eval_split = "val"

    def official_split(self, split: str) -> str:
        return VQAV2_SPLITS.get(split, (split, split))[0]

    def published_rows(self, split: str) -> int | None:
        """Questions of the VQAv2 release (v2.0) per split; val is the held-out slice with train_on_val."""
        if split == "val" and self.cfg.train_on_val:
            return int(self.cfg.heldout) or None
        return {"train": 443757, "val": 214354, "test-dev": 107394, "test": 447793}.get(split)

    def questions(self, split: str, limit: int | None) -> datasets.Dataset:
        self.check_question_set()
        if self.cfg.heldout and not self.cfg.train_on_val:
            raise UserError("task.dataset.heldout only applies with task.dataset.train_on_val=true "
                            "(without it, all of val is evaluated and none of it trained on)")
        if not self.cfg.train_on_val or split not in ("train", "val"):
            return self.read(split, limit)
        if split == "val":
            if not self.cfg.heldout:
                raise UserError("task.dataset.train_on_val=true trains on every val question: set "
                                "task.dataset.heldout=N to evaluate on N held-out val questions, or "
                                "evaluate on the server split (task.eval_split=test-dev)")
            return _first(self._val_parts[1], limit)
        train = datasets.concatenate_datasets([self.read("train", None), self._val_parts[0]])
        return _first(train, limit)

    @functools.cached_property
    def _val_parts(self) -> tuple[datasets.Dataset, datasets.Dataset]:
        """(val questions to train on, held-out val questions): the held-out part is the questions
        of val's first images, in file order, until at least `heldout` questions are held out."""
        val = self.read("val", None)
        per_image = Counter(val["image_id"])
        held: set[int] = set()
        count = 0
        for image_id in per_image:  # insertion order: first appearance in the file
            if count >= int(self.cfg.heldout):
                break
            held.add(image_id)
            count += per_image[image_id]
        flags = [image_id in held for image_id in val["image_id"]]
        keep = [i for i, is_held in enumerate(flags) if not is_held]
        return val.select(keep), val.select([i for i, is_held in enumerate(flags) if is_held])

    def read(self, split: str, limit: int | None) -> datasets.Dataset:
        """One split as its official files say, after checking that every file and image is there."""
        cfg = self.cfg
        files = (cfg.get("files") or {}).get(split) or {}
        if split not in VQAV2_SPLITS and not (files.get("questions") and files.get("images")):
            raise UserError(f"task.dataset.kind=vqav2 has no split {split!r}; choose one of: "
                            f"{', '.join(VQAV2_SPLITS)} (or set task.dataset.files.{split}.questions "
                            f"and task.dataset.files.{split}.images)")
        file_subtype, image_subtype = VQAV2_SPLITS.get(split, (split, None))
        if files.get("images"):
            images, origin = Path(str(files.images)), _origin(f"files.{split}.images", files.images)
        else:
            root, origin = image_root(cfg)
            images = root / str(image_subtype)
        pattern = str(cfg.image_pattern or COCO_IMAGE_PATTERN)
        fetch_files = f"{FETCH} {'vqav2-test' if split in SERVER_SPLITS else 'vqav2'} --root {cfg.root}"
        fetch_images = f"{FETCH} {'coco-test' if image_subtype == 'test2015' else 'coco'} --root {images.parent}"
        with fetch_hint(fetch_files, images=fetch_images):
            questions = require_path(*self._file(split, "questions", files, file_subtype))
            annotations = self._file(split, "annotations", files, file_subtype)
            if split in SERVER_SPLITS and not annotations[0].exists():
                annotation_path = None  # the official test files have none: scored by the server
            else:
                annotation_path = require_path(*annotations)
            require_path(images, f"COCO {image_subtype or split} image directory", origin, images=True)
            return load_vqa(questions, annotation_path, images, pattern, limit=limit, image_subtype=image_subtype)

    def _file(self, split: str, what: str, files: Any, subtype: str) -> tuple[Path, str, str]:
        """(path, description, config origin) of a split's questions or annotations file: the
        per-split key, else the all-splits `task.dataset.<what>` (`{split}` filled), else the
        official name under root."""
        description = f"VQAv2 {split} {what} file"
        if files.get(what):
            return Path(str(files[what])), description, _origin(f"files.{split}.{what}", files[what])
        if self.cfg.get(what):
            return Path(str(self.cfg[what]).replace("{split}", split)), description, _origin(what, self.cfg[what])
        name = (VQAV2_QUESTIONS if what == "questions" else VQAV2_ANNOTATIONS).format(subtype=subtype)
        return Path(str(self.cfg.root)) / name, description, _origin("root", self.cfg.root)


def _first(data: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    return data if limit is None or limit >= len(data) else data.select(range(limit))
