"""Loaders for image-text files in their official formats: COCO Karpathy captions and the LLaVA
pre-training corpus.

They read only what the official formats hold, so real COCO files take the same path as the
synthetic world. Images are stored as paths and decoded lazily by `datasets.Image()`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import datasets

from ptpeft_cli.errors import MissingData, UserError

# Karpathy's "restval" images are conventionally trained on together with "train".
_KARPATHY_TRAIN_SPLITS = ("train", "restval")


def read_json(path: Path, what: str) -> Any:
    """Parsed JSON, or a UserError naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise MissingData(f"{what} file not found: {path}")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise UserError(f"{what} file {path} is not valid JSON: {error}") from error


def require_keys(record: Any, keys: tuple[str, ...], path: Path, where: str) -> None:
    """UserError if `record` is not a dict holding every key in `keys`."""
    if not isinstance(record, dict):
        raise UserError(f"{path}: {where} must be a JSON object, got {type(record).__name__}")
    missing = [key for key in keys if key not in record]
    if missing:
        raise UserError(f"{path}: {where} lacks key(s) {missing}")


def check_images(image_paths: list[str], hint: str) -> None:
    """Every image a split names must be on disk before anything trains: a run that dies on a
    missing JPEG hours in is worse than a second of `os.path.exists` over the (unique) paths now.
    Nothing is decoded. The message names the first missing path and, when its whole directory is
    absent (the usual case: an image zip not unpacked), says so."""
    unique = list(dict.fromkeys(image_paths))
    missing = [path for path in unique if not os.path.exists(path)]
    if not missing:
        return
    directory = Path(missing[0]).parent
    why = (f"directory {directory} does not exist" if not directory.is_dir()
           else f"{len(missing)} of {len(unique)} images of this split are missing")
    raise MissingData(f"image not found: {missing[0]} ({why}; {hint})", images=True)


def lazy_image_dataset(columns: dict[str, list[Any]], features: dict[str, Any]) -> datasets.Dataset:
    """A Dataset whose `image` column holds paths, decoded to PIL on access."""
    return datasets.Dataset.from_dict(
        columns, features=datasets.Features({**features, "image": datasets.Image()})
    )


def load_karpathy_captions(
    karpathy_json: Path, image_root: Path, split: str, limit: int | None = None,
    use_restval: bool = True,
) -> datasets.Dataset:
    """Images of one Karpathy split with their raw reference captions (first `limit` images).

    Columns: image_id (cocoid), image (lazy), captions, file_name. The image path is
    image_root/filepath/filename, as in the real file (filepath "val2014"). Split "train" also
    takes "restval" images unless `use_restval` is false: the usual Karpathy training set.
    """
    karpathy_json = Path(karpathy_json)
    data = read_json(karpathy_json, "Karpathy captions")
    require_keys(data, ("images",), karpathy_json, "the top level")
    entries = data["images"]
    if not isinstance(entries, list):
        raise UserError(f"{karpathy_json}: 'images' must be a list")
    present = sorted({str(entry.get("split")) for entry in entries if isinstance(entry, dict)})
    allowed = sorted(set(present) | ({"train"} if "restval" in present else set()))
    if split not in allowed:
        raise UserError(f"split {split!r} is not in {karpathy_json}; allowed: {allowed}")
    wanted = _KARPATHY_TRAIN_SPLITS if split == "train" and use_restval else (split,)
    columns: dict[str, list[Any]] = {"image_id": [], "image": [], "captions": [], "file_name": []}
    for entry in entries:
        require_keys(
            entry,
            ("split", "filepath", "filename", "cocoid", "sentences"),
            karpathy_json,
            "an image entry",
        )
        if entry["split"] not in wanted:
            continue
        columns["image_id"].append(int(entry["cocoid"]))
        columns["image"].append(str(Path(image_root) / entry["filepath"] / entry["filename"]))
        columns["captions"].append([str(sentence["raw"]) for sentence in entry["sentences"]])
        columns["file_name"].append(str(entry["filename"]))
        if limit is not None and len(columns["image_id"]) >= limit:
            break
    if not columns["image"]:
        raise MissingData(f"split {split!r} of {karpathy_json} holds no images")
    check_images(columns["image"], f"image_root={image_root} + filepath/filename of {karpathy_json.name}")
    return lazy_image_dataset(
        columns,
        {
            "image_id": datasets.Value("int64"),
            "captions": datasets.List(datasets.Value("string")),
            "file_name": datasets.Value("string"),
        },
    )


def load_pretrain_corpus(
    corpus_json: Path, image_root: Path, limit: int | None = None
) -> datasets.Dataset:
    """LLaVA pre-training conversations as rows (image, instruction, response); the `<image>`
    placeholder is stripped from the instruction, since each family places it itself."""
    corpus_json = Path(corpus_json)
    entries = read_json(corpus_json, "pre-training corpus")
    if not isinstance(entries, list):
        raise UserError(f"{corpus_json}: expected a JSON list of conversations (LLaVA format)")
    columns: dict[str, list[Any]] = {"image": [], "instruction": [], "response": []}
    for entry in entries[:limit]:
        require_keys(entry, ("image", "conversations"), corpus_json, "a conversation entry")
        turns = entry["conversations"]
        if len(turns) < 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
            raise UserError(
                f"{corpus_json}: entry {entry.get('id')!r} must start with a human then a gpt turn"
            )
        instruction = str(turns[0]["value"]).replace("<image>", "").strip()
        columns["image"].append(str(Path(image_root) / entry["image"]))
        columns["instruction"].append(instruction)
        columns["response"].append(str(turns[1]["value"]))
    check_images(columns["image"], f"image_root={image_root} + the entry's image")
    return lazy_image_dataset(
        columns,
        {
            "instruction": datasets.Value("string"),
            "response": datasets.Value("string"),
        },
    )
