"""Small caption and VQA sets written in the official COCO / VQAv2 file formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REFERENCES: dict[int, list[str]] = {
    11: [
        "a red circle on the left.",
        "A red circle.",
        "there is one red circle",
        "a small red circle",
    ],
    12: [
        "two blue squares",
        "Two blue squares on the right!",
        "blue squares",
        "a pair of blue squares",
        "two squares",
    ],
    13: [
        "a green triangle above a yellow cross",
        "a green triangle and a yellow cross",
        "triangle and cross",
    ],
    14: ["a large purple diamond", "one purple diamond in the middle", "a big diamond, purple"],
}
PREDICTIONS: dict[int, str] = {
    11: "a red circle",
    12: "two blue squares on the right",
    13: "a green circle and a yellow cross",
    14: "a purple diamond",
}


def write_caption_files(
    directory: Path, predictions: dict[int, str] = PREDICTIONS
) -> tuple[Path, Path]:
    """COCO caption annotation file and COCO result file, as the official toolkit reads them."""
    annotations = {
        "info": {"description": "test"},
        "licenses": [],
        "type": "captions",
        "images": [{"id": image_id, "file_name": f"{image_id}.png"} for image_id in REFERENCES],
        "annotations": [
            {"image_id": image_id, "id": 100 * image_id + index, "caption": caption}
            for image_id, captions in REFERENCES.items()
            for index, caption in enumerate(captions)
        ],
    }
    results = [
        {"image_id": image_id, "caption": caption} for image_id, caption in predictions.items()
    ]
    annotations_path = directory / "captions_test.json"
    results_path = directory / "captions_test_results.json"
    annotations_path.write_text(json.dumps(annotations))
    results_path.write_text(json.dumps(results))
    return results_path, annotations_path


@pytest.fixture
def caption_files(tmp_path: Path) -> tuple[Path, Path]:
    return write_caption_files(tmp_path)
