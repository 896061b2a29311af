"""Images decoded and processed once, stored by `datasets.map`, gathered per batch by index.

Why: decoding PNGs and running the image processor for every batch in the main process cost
~15 ms of CPU per batch of 32 (a few % of a training step on 2 CPU cores) for images that never
change, and each image was processed again for each of its captions and each epoch. Here the processed tensors (e.g.
`pixel_values`) are written once per distinct image (not per row) to an Arrow file whose name is
a hash of the image files (path, size, mtime) and of everything that determines the processing
(the family's `image_inputs_fingerprint`: processor class and config). A different family, image
size or normalisation therefore re-processes, and `datasets.map` reuses the file across runs.
Rows then carry `image_index` instead of the image; a batch is one Arrow `take` (no Python loop
over pixels), memory-mapped, so it scales past RAM.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from ptpeft_cli.data.coco import lazy_image_dataset

# Bump when the stored layout changes.
CACHE_FORMAT = 1
IMAGE_INDEX = "image_index"
ProcessFn = Callable[[list[Any]], "dict[str, torch.Tensor] | None"]


@dataclass
class ImageStore:
    """Processed tensors of distinct images: `gather(indices)` -> the batch's stacked tensors."""

    table: datasets.Dataset  # numpy-formatted; one flat fixed-length column per tensor
    shapes: dict[str, tuple[int, ...]]  # per-image shape of each tensor
    index: dict[str, int]  # image path -> row
    key: str  # the cache key (file name stem), for tests and logs

    def __len__(self) -> int:
        return len(self.table)

    def gather(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        rows = self.table[list(indices)]
        return {name: torch.from_numpy(np.require(rows[name], requirements="W")).view(len(indices), *shape)
                for name, shape in self.shapes.items()}


def image_paths(rows: datasets.Dataset) -> list[str] | None:
    """The file path behind each row's lazily decoded `image`; None if any image has no file
    (e.g. bytes embedded in a hub dataset): those are not cached."""
    if "image" not in rows.column_names:
        return None
    raw = rows.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
    paths = [cell["path"] for cell in raw["image"]]
    return None if any(path is None for path in paths) else [str(path) for path in paths]


def with_image_index(rows: datasets.Dataset, store: ImageStore) -> datasets.Dataset:
    """`rows` with `image` replaced by `image_index` into `store` (nothing left to decode)."""
    paths = image_paths(rows)
    if paths is None:
        raise ValueError("rows without image files cannot point into an image store")
    return rows.remove_columns("image").add_column(IMAGE_INDEX, [store.index[path] for path in paths])


def _files_signature(paths: list[str]) -> str:
    """Path, size and modification time of every image: a replaced file re-processes."""
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_key(paths: list[str], processing: dict[str, Any]) -> str:
    payload = json.dumps({"format": CACHE_FORMAT, "processing": processing, "files": _files_signature(paths)},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def build_image_store(paths: Sequence[str], process: ProcessFn, processing: dict[str, Any], cache_dir: Path,
                      batch_size: int = 64) -> ImageStore | None:
    """Process each distinct image of `paths` once with `process` (a family's `image_inputs`)
    and store the result under `cache_dir`; None when `process` declines (returns None)."""
    distinct = list(dict.fromkeys(str(path) for path in paths))
    if not distinct:
        return None
    table = lazy_image_dataset({"image": distinct}, {})
    probe = process([table[0]["image"].convert("RGB")])
    if probe is None:
        return None
    shapes = {name: tuple(tensor.shape[1:]) for name, tensor in probe.items()}
    features = datasets.Features({
        name: datasets.List(datasets.Value(str(tensor.numpy().dtype)), length=math.prod(shapes[name]))
        for name, tensor in probe.items()
    })

    def process_batch(batch: dict[str, list]) -> dict[str, np.ndarray]:
        tensors = process([image.convert("RGB") for image in batch["image"]])
        assert tensors is not None
        return {name: tensor.reshape(len(tensor), -1).numpy() for name, tensor in tensors.items()}

    key = cache_key(distinct, processing)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stored = table.map(process_batch, batched=True, batch_size=batch_size, remove_columns=["image"],
                       features=features, cache_file_name=str(cache_dir / f"image-inputs-{key}.arrow"),
                       new_fingerprint=key, desc="processing images (once, cached)")
    index = {path: row for row, path in enumerate(distinct)}
    return ImageStore(table=stored.with_format("numpy"), shapes=shapes, index=index, key=key)
