"""Write the synthetic world to disk once, in the official COCO / Karpathy / VQAv2 / LLaVA formats.

Writing to the official formats means the synthetic default and the real datasets are read by
the same loaders. Each downstream split has two VQAv2 file pairs on the same images: the default
one holds the compositional kinds the pre-training corpus never asks (synthetic/questions.py, the
task with headroom), the `pretrain_kinds` one the kinds the model was pre-trained on (a retention
probe: can the tuned model still do what it could before?). The world lives in
`root/<fingerprint>/`, written into a temp dir and renamed into place, so a crashed or
concurrent writer never leaves a half-written world behind.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ptpeft_cli.errors import UserError
from ptpeft_cli.synthetic.captions import coco_captions
from ptpeft_cli.synthetic.questions import compositional_items
from ptpeft_cli.synthetic.text import pretrain_texts, tokenize, vqa_items
from ptpeft_cli.synthetic.world import render, sample_scene

# Bump when the bytes written for the same spec change (templates, rendering, layout).
# 2: the default VQA files hold the compositional kinds; pre-training kinds moved to their own pair.
FORMAT_VERSION = 2
DOWNSTREAM_SPLITS: tuple[str, ...] = ("train", "val", "test")
PRETRAIN_SPLIT = "pretrain"
# Fixed id blocks per split: a split's images do not change when another split's size does.
SPLIT_ID_OFFSET: dict[str, int] = {
    "train": 1_000_000,
    "val": 2_000_000,
    "test": 3_000_000,
    PRETRAIN_SPLIT: 10_000_000,
}
QUESTION_ID_FACTOR = 1000  # VQAv2 convention: question_id = image_id * 1000 + k
# The VQA file pairs of a downstream split: the default task, then the retention probe.
VQA_KINDS: tuple[str, ...] = ("compositional", "pretrain_kinds")
# Question ids of the pretrain_kinds files start at k = 500, so ids never clash between the two.
_VQA_ID_START: dict[str, int] = {"compositional": 0, "pretrain_kinds": 500}
COMPLETE_MARKER = "COMPLETE"
_SPLIT_ID_BLOCK = 1_000_000
_CHUNK = 256
_PARALLEL_MIN_IMAGES = 4000  # below this, starting worker processes costs more than it saves


@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines the written bytes (with FORMAT_VERSION)."""

    seed: int = 0
    image_size: int = 64
    n_pretrain: int = 20000
    n_train: int = 2000
    n_val: int = 250
    n_test: int = 250

    def __post_init__(self) -> None:
        for split in (*DOWNSTREAM_SPLITS, PRETRAIN_SPLIT):
            if self.count(split) < 0:
                raise UserError(f"world size for split {split!r} must be >= 0, got {self.count(split)}")
        too_big = [s for s in DOWNSTREAM_SPLITS if self.count(s) >= _SPLIT_ID_BLOCK]
        if too_big:
            raise UserError(f"splits {too_big} must hold fewer than {_SPLIT_ID_BLOCK} images each")
        if self.image_size < 16:
            raise UserError(f"image_size must be >= 16 pixels, got {self.image_size}")

    def count(self, split: str) -> int:
        return {
            "train": self.n_train,
            "val": self.n_val,
            "test": self.n_test,
            PRETRAIN_SPLIT: self.n_pretrain,
        }[split]

    def image_ids(self, split: str) -> range:
        offset = SPLIT_ID_OFFSET[split]
        return range(offset, offset + self.count(split))

    def fingerprint(self) -> str:
        payload = json.dumps({"format_version": FORMAT_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class WorldPaths:
    """Where each official-format file of one written world lives."""

    root: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def karpathy_json(self) -> Path:
        return self.root / "dataset_coco.json"

    @property
    def pretrain_json(self) -> Path:
        return self.root / "pretrain" / "corpus.json"

    @property
    def scenes_json(self) -> Path:
        return self.root / "scenes.json"

    @property
    def spec_json(self) -> Path:
        return self.root / "world_spec.json"

    def caption_annotations(self, split: str) -> Path:
        return self.root / "annotations" / f"captions_{split}.json"

    def _vqa_dir(self, kind: str) -> Path:
        if kind not in VQA_KINDS:
            raise UserError(f"unknown VQA question kind {kind!r}; known: {', '.join(VQA_KINDS)}")
        return self.root / "vqa" if kind == "compositional" else self.root / "vqa" / kind

    def vqa_questions(self, split: str, kind: str = "compositional") -> Path:
        """VQAv2 questions of `split`; kind="pretrain_kinds" is the retention probe's file."""
        return self._vqa_dir(kind) / f"v2_OpenEnded_mscoco_{split}_questions.json"

    def vqa_annotations(self, split: str, kind: str = "compositional") -> Path:
        """VQAv2 annotations of `split`; kind="pretrain_kinds" is the retention probe's file."""
        return self._vqa_dir(kind) / f"v2_mscoco_{split}_annotations.json"

    def image_pattern(self, split: str) -> str:
        """Image path pattern relative to `root`, as `load_vqa` takes it."""
        return f"images/synth_{split}_{{image_id:012d}}.png"

    def image_file(self, split: str, image_id: int) -> Path:
        return self.root / self.image_pattern(split).format(image_id=image_id)


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, separators=(",", ":"))


# ---- per-image work (runs in worker processes) ---------------------------------------------


def _make_chunk(job: tuple[str, str, int, int, list[int]]) -> list[dict[str, Any]]:
    """Sample, render and describe a chunk of images; the PNGs go straight to disk.

    One rng per image (`default_rng([seed, image_id])`) drives the scene and then its texts, so
    the output does not depend on chunking or on the number of workers.
    """
    root, split, seed, image_size, image_ids = job
    paths = WorldPaths(Path(root))
    records = []
    for image_id in image_ids:
        rng = np.random.default_rng([seed, image_id])
        scene = sample_scene(rng, image_id)
        render(scene, image_size, seed).save(
            paths.image_file(split, image_id), format="PNG", compress_level=6
        )
        record: dict[str, Any] = {"image_id": image_id, "scene": scene.to_dict()}
        if split == PRETRAIN_SPLIT:
            record["pairs"] = pretrain_texts(scene, rng)
        else:
            # Order matters: captions and pre-training kinds draw from rng exactly as in format 1.
            record["captions"] = coco_captions(scene, rng)
            record["vqa_pretrain_kinds"] = [asdict(item) for item in vqa_items(scene, rng)]
            record["vqa_compositional"] = [asdict(item) for item in compositional_items(scene, rng)]
        records.append(record)
    return records


def _records(
    root: Path, spec: WorldSpec, workers: int, progress: bool
) -> Iterator[tuple[str, dict]]:
    """(split, record) for every image, in a fixed order whatever the worker count."""
    jobs = []
    for split in (*DOWNSTREAM_SPLITS, PRETRAIN_SPLIT):
        ids = list(spec.image_ids(split))
        jobs += [
            (str(root), split, spec.seed, spec.image_size, ids[i : i + _CHUNK])
            for i in range(0, len(ids), _CHUNK)
        ]
    total = sum(len(job[4]) for job in jobs)
    with tqdm(total=total, desc="writing synthetic world", unit="img", disable=not progress) as bar:
        if workers > 1 and total >= _PARALLEL_MIN_IMAGES:
            # spawn, not fork: the parent may hold torch/OpenMP threads that fork would copy.
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for job, chunk in zip(jobs, pool.imap(_make_chunk, jobs), strict=True):
                    bar.update(len(chunk))
                    yield from ((job[1], record) for record in chunk)
        else:
            for job in jobs:
                chunk = _make_chunk(job)
                bar.update(len(chunk))
                yield from ((job[1], record) for record in chunk)


# ---- official-format documents -------------------------------------------------------------


def _info(spec: WorldSpec) -> dict[str, Any]:
    return {
        "description": "ptpeft synthetic shapes world",
        "version": str(FORMAT_VERSION),
        "world_spec": asdict(spec),
        "contributor": "ptpeft",
    }


class _Documents:
    """Accumulates every official-format document while records stream in."""

    def __init__(self, spec: WorldSpec) -> None:
        self.spec = spec
        self.scenes: dict[str, Any] = {}
        self.karpathy: list[dict[str, Any]] = []
        self.captions = {s: {"images": [], "annotations": []} for s in DOWNSTREAM_SPLITS}
        self.questions: dict[tuple[str, str], list[dict[str, Any]]] = {
            (s, k): [] for s in DOWNSTREAM_SPLITS for k in VQA_KINDS}
        self.answers: dict[tuple[str, str], list[dict[str, Any]]] = {
            (s, k): [] for s in DOWNSTREAM_SPLITS for k in VQA_KINDS}
        self.corpus: list[dict[str, Any]] = []
        self._next_sentid = 0

    def add(self, split: str, record: dict[str, Any]) -> None:
        image_id = record["image_id"]
        self.scenes[str(image_id)] = record["scene"]
        file_name = f"synth_{split}_{image_id:012d}.png"
        if split == PRETRAIN_SPLIT:
            for k, (instruction, response) in enumerate(record["pairs"]):
                self.corpus.append(
                    {
                        "id": f"{image_id:012d}_{k}",
                        "image": f"images/{file_name}",
                        "conversations": [
                            {"from": "human", "value": f"<image>\n{instruction}"},
                            {"from": "gpt", "value": response},
                        ],
                    }
                )
            return
        self._add_captions(split, image_id, file_name, record["captions"])
        for kind in VQA_KINDS:
            self._add_vqa(split, kind, image_id, record[f"vqa_{kind}"])

    def _add_captions(self, split: str, image_id: int, file_name: str, captions: list[str]) -> None:
        imgid = len(self.karpathy)
        sentids = list(range(self._next_sentid, self._next_sentid + len(captions)))
        self._next_sentid += len(captions)
        self.karpathy.append(
            {
                "filepath": "images",
                "filename": file_name,
                "imgid": imgid,
                "split": split,
                "sentences": [
                    {"raw": c, "tokens": tokenize(c), "imgid": imgid, "sentid": s}
                    for c, s in zip(captions, sentids, strict=True)
                ],
                "sentids": sentids,
                "cocoid": image_id,
            }
        )
        size = self.spec.image_size
        self.captions[split]["images"].append(
            {"id": image_id, "file_name": file_name, "width": size, "height": size}
        )
        self.captions[split]["annotations"] += [
            {"image_id": image_id, "id": s, "caption": c}
            for c, s in zip(captions, sentids, strict=True)
        ]

    def _add_vqa(self, split: str, kind: str, image_id: int, items: list[dict[str, Any]]) -> None:
        for k, item in enumerate(items, start=_VQA_ID_START[kind]):
            question_id = image_id * QUESTION_ID_FACTOR + k
            self.questions[split, kind].append(
                {"image_id": image_id, "question": item["question"], "question_id": question_id}
            )
            answers = [
                {"answer": a, "answer_confidence": c, "answer_id": i + 1}
                for i, (a, c) in enumerate(
                    zip(item["answers"], item["answer_confidences"], strict=True)
                )
            ]
            self.answers[split, kind].append(
                {
                    "question_type": item["question_type"],
                    "multiple_choice_answer": Counter(item["answers"]).most_common(1)[0][0],
                    "answers": answers,
                    "image_id": image_id,
                    "answer_type": item["answer_type"],
                    "question_id": question_id,
                }
            )

    def _write_vqa(self, paths: WorldPaths, split: str, kind: str, info: dict[str, Any],
                   license_: dict[str, str]) -> None:
        _write_json(
            paths.vqa_questions(split, kind),
            {
                "info": info,
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "license": license_,
                "data_subtype": split,
                "questions": self.questions[split, kind],
            },
        )
        _write_json(
            paths.vqa_annotations(split, kind),
            {
                "info": info,
                "license": license_,
                "data_type": "mscoco",
                "data_subtype": split,
                "annotations": self.answers[split, kind],
            },
        )

    def write(self, paths: WorldPaths) -> None:
        info = _info(self.spec)
        license_ = {
            "name": "CC BY 4.0 (synthetic)",
            "url": "https://creativecommons.org/licenses/by/4.0/",
        }
        _write_json(paths.karpathy_json, {"images": self.karpathy, "dataset": "coco"})
        for split in DOWNSTREAM_SPLITS:
            _write_json(
                paths.caption_annotations(split),
                {"info": info, "licenses": [license_], "type": "captions", **self.captions[split]},
            )
            for kind in VQA_KINDS:
                self._write_vqa(paths, split, kind, {**info, "question_kinds": kind}, license_)
        _write_json(paths.pretrain_json, self.corpus)
        _write_json(paths.scenes_json, self.scenes)
        _write_json(paths.spec_json, {"format_version": FORMAT_VERSION, **asdict(self.spec)})


def is_complete(world_dir: Path) -> bool:
    return (world_dir / COMPLETE_MARKER).is_file()


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def ensure_world(
    root: Path, spec: WorldSpec, workers: int | None = None, progress: bool = True
) -> WorldPaths:
    """The world for `spec` under `root/<fingerprint>/`, written on first use and reused after.

    Same spec -> byte-identical files (any worker count). Written into a temp dir, marked
    complete, then renamed into place; a concurrent writer that loses the race drops its copy.
    """
    root = Path(root)
    final = root / spec.fingerprint()
    if is_complete(final):
        return WorldPaths(final)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{spec.fingerprint()}-{uuid.uuid4().hex[:8]}"
    try:
        paths = WorldPaths(tmp)
        paths.images.mkdir(parents=True)
        documents = _Documents(spec)
        for split, record in _records(tmp, spec, workers or _default_workers(), progress):
            documents.add(split, record)
        documents.write(paths)
        (tmp / COMPLETE_MARKER).write_text(spec.fingerprint() + "\n")
        if final.exists() and not is_complete(final):
            shutil.rmtree(final)  # left by an interrupted manual copy; never by this writer
        try:
            os.replace(tmp, final)
        except OSError:
            if not is_complete(final):  # lost a race only if the winner finished
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return WorldPaths(final)
