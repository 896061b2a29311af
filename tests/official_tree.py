"""A small tree laid out exactly like the official downloads, written by tests (no download).

    coco/dataset_coco.json                  Karpathy split file: train, restval, val, test
    coco/train2014/COCO_train2014_%012d.jpg COCO 2014 images (tiny JPEGs)
    coco/val2014/COCO_val2014_%012d.jpg
    coco/test2015/COCO_test2015_%012d.jpg   the images test-dev questions ask about
    coco/annotations/captions_val2014.json  COCO caption annotations (what `ptpeft score` reads)
    vqa/v2_OpenEnded_mscoco_{train2014,val2014,test-dev2015,test2015}_questions.json
    vqa/v2_mscoco_{train2014,val2014}_annotations.json   ten answers per question

One module, so the unit tests, the end-to-end runs and the docs-commands test read the same tree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

# Karpathy split -> (COCO image set, cocoids), as in the real file: train from train2014, the rest
# (restval, val, test) from val2014.
KARPATHY_SPLITS: dict[str, tuple[str, tuple[int, ...]]] = {
    "train": ("train2014", (9, 25, 30, 34, 36, 42)),
    "restval": ("val2014", (73, 74)),
    "val": ("val2014", (133, 136, 139)),
    "test": ("val2014", (391895, 522418, 184613, 318219)),
}
TEST2015_IDS = (1, 14, 16)
COLOURS = ("red", "green", "blue", "yellow", "white", "black")
QUESTIONS = (("what color is the object?", "what color", "other"),
             ("is there a circle?", "is there a", "yes/no"),
             ("how many objects are there?", "how many", "number"))


@dataclass(frozen=True)
class OfficialTree:
    """Paths of the written tree and what it holds."""

    root: Path

    @property
    def coco(self) -> Path:
        return self.root / "coco"

    @property
    def vqa(self) -> Path:
        return self.root / "vqa"

    @property
    def karpathy_json(self) -> Path:
        return self.coco / "dataset_coco.json"

    def image(self, subset: str, image_id: int) -> Path:
        return self.coco / subset / f"COCO_{subset}_{image_id:012d}.jpg"

    def questions(self, subtype: str) -> Path:
        return self.vqa / f"v2_OpenEnded_mscoco_{subtype}_questions.json"

    def annotations(self, subtype: str) -> Path:
        return self.vqa / f"v2_mscoco_{subtype}_annotations.json"

    def karpathy_ids(self, *splits: str) -> list[int]:
        return [image_id for split in splits for image_id in KARPATHY_SPLITS[split][1]]

    def question_ids(self, subtype: str) -> list[int]:
        return [q["question_id"] for q in json.loads(self.questions(subtype).read_text())["questions"]]


def _caption(image_id: int, k: int) -> str:
    colour = COLOURS[(image_id + k) % len(COLOURS)]
    return f"a {colour} circle next to a {COLOURS[(image_id * 7 + k) % len(COLOURS)]} square number {k}"


def _write_jpeg(path: Path, image_id: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((image_id * 37) % 256, (image_id * 91) % 256, (image_id * 53) % 256)
    Image.new("RGB", (32, 24), colour).save(path, format="JPEG")


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def _karpathy(tree: OfficialTree) -> dict[str, Any]:
    images, sentence_id = [], 0
    for split, (subset, image_ids) in KARPATHY_SPLITS.items():
        for image_id in image_ids:
            sentences = []
            for k in range(5):
                raw = _caption(image_id, k)
                sentences.append({"tokens": raw.split(), "raw": raw, "imgid": len(images), "sentid": sentence_id})
                sentence_id += 1
            images.append({"filepath": subset, "filename": tree.image(subset, image_id).name, "imgid": len(images),
                           "split": split, "sentids": [s["sentid"] for s in sentences], "sentences": sentences,
                           "cocoid": image_id})
    return {"images": images, "dataset": "coco"}


def _vqa(subtype: str, image_ids: tuple[int, ...], annotated: bool) -> tuple[dict, dict | None]:
    info = {"description": "ptpeft test tree", "version": "2.0", "year": 2017}
    questions, annotations = [], []
    for image_id in image_ids:
        for k, (question, question_type, answer_type) in enumerate(QUESTIONS):
            question_id = image_id * 1000 + k
            questions.append({"image_id": image_id, "question": question, "question_id": question_id})
            answer = {"other": COLOURS[image_id % len(COLOURS)], "yes/no": "yes" if image_id % 2 else "no",
                      "number": str(1 + image_id % 3)}[answer_type]
            answers = [{"answer": answer if j < 8 else "maybe", "answer_confidence": "yes", "answer_id": j + 1}
                       for j in range(10)]
            annotations.append({"question_type": question_type, "multiple_choice_answer": answer, "answers": answers,
                                "image_id": image_id, "answer_type": answer_type, "question_id": question_id})
    common = {"info": info, "license": {"name": "test", "url": ""}, "data_subtype": subtype}
    question_file = {**common, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions}
    return question_file, ({**common, "annotations": annotations} if annotated else None)


def write_official_tree(root: Path) -> OfficialTree:
    """Write the tree under `root` (JPEGs, Karpathy json, COCO caption json, VQAv2 jsons)."""
    tree = OfficialTree(Path(root))
    karpathy = _karpathy(tree)
    _write_json(tree.karpathy_json, karpathy)
    for entry in karpathy["images"]:
        _write_jpeg(tree.coco / entry["filepath"] / entry["filename"], entry["cocoid"])
    for image_id in TEST2015_IDS:
        _write_jpeg(tree.image("test2015", image_id), image_id)
    val2014 = [entry for entry in karpathy["images"] if entry["filepath"] == "val2014"]
    _write_json(tree.coco / "annotations" / "captions_val2014.json", {
        "info": {"description": "ptpeft test tree"}, "licenses": [], "type": "captions",
        "images": [{"id": e["cocoid"], "file_name": e["filename"]} for e in val2014],
        "annotations": [{"image_id": e["cocoid"], "id": s["sentid"], "caption": s["raw"]}
                        for e in val2014 for s in e["sentences"]]})
    image_sets = {"train2014": tree.karpathy_ids("train"), "val2014": tree.karpathy_ids("restval", "val", "test"),
                  "test-dev2015": TEST2015_IDS[:2], "test2015": TEST2015_IDS}
    for subtype, image_ids in image_sets.items():
        questions, annotations = _vqa(subtype, tuple(image_ids), annotated=subtype.endswith("2014"))
        _write_json(tree.questions(subtype), questions)
        if annotations is not None:
            _write_json(tree.annotations(subtype), annotations)
    return tree
