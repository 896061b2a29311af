"""Loaders read only the official formats: columns, lengths, lazy images, limits, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from small_world_spec import SMALL_SPEC

from ptpeft_cli.data.coco import load_karpathy_captions, load_pretrain_corpus
from ptpeft_cli.data.vqa import load_vqa
from ptpeft_cli.errors import UserError
from ptpeft_cli.synthetic.scenes import load_scenes
from ptpeft_cli.synthetic.world import Scene, sample_scene
from ptpeft_cli.synthetic.writer import WorldPaths


def _assert_rgb64(image: object) -> None:
    assert image.mode == "RGB" and image.size == (64, 64)  # type: ignore[attr-defined]


def test_karpathy_captions_columns_lengths_and_lazy_images(small_world: WorldPaths) -> None:
    data = load_karpathy_captions(small_world.karpathy_json, small_world.root, "train")
    assert data.column_names == ["image_id", "image", "captions", "file_name"]
    assert len(data) == SMALL_SPEC.n_train
    assert data.data.column("image")[0].as_py()["bytes"] is None  # stored as a path, not pixels
    row = data[0]
    _assert_rgb64(row["image"])
    assert len(row["captions"]) == 5 and row["file_name"].endswith(".png")
    assert data["image_id"] == list(SMALL_SPEC.image_ids("train"))
    assert (
        len(load_karpathy_captions(small_world.karpathy_json, small_world.root, "val", limit=3))
        == 3
    )


def test_karpathy_unknown_split_lists_the_allowed_ones(small_world: WorldPaths) -> None:
    with pytest.raises(UserError, match=r"allowed: \['test', 'train', 'val'\]"):
        load_karpathy_captions(small_world.karpathy_json, small_world.root, "restval")


def test_karpathy_train_includes_restval(small_world: WorldPaths, tmp_path: Path) -> None:
    data = json.loads(small_world.karpathy_json.read_text())
    data["images"][0]["split"] = "restval"
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(data))
    assert len(load_karpathy_captions(path, small_world.root, "train")) == SMALL_SPEC.n_train
    assert len(load_karpathy_captions(path, small_world.root, "restval")) == 1


def test_vqa_with_annotations(small_world: WorldPaths) -> None:
    data = load_vqa(
        small_world.vqa_questions("val"),
        small_world.vqa_annotations("val"),
        small_world.root,
        small_world.image_pattern("val"),
    )
    questions = json.loads(small_world.vqa_questions("val").read_text())["questions"]
    assert len(data) == len(questions)
    assert set(data.column_names) == {
        "question_id",
        "image_id",
        "question",
        "image",
        "answers",
        "multiple_choice_answer",
        "answer_type",
        "question_type",
    }
    assert data["question_id"] == [q["question_id"] for q in questions]
    row = data[0]
    _assert_rgb64(row["image"])
    assert len(row["answers"]) == 10 and row["multiple_choice_answer"] in row["answers"]


def test_vqa_reads_the_pretrain_kinds_probe_unchanged(small_world: WorldPaths) -> None:
    questions = small_world.vqa_questions("test", "pretrain_kinds")
    data = load_vqa(questions, small_world.vqa_annotations("test", "pretrain_kinds"),
                    small_world.root, small_world.image_pattern("test"))
    written = json.loads(questions.read_text())["questions"]
    assert data["question_id"] == [q["question_id"] for q in written]
    assert len(data[0]["answers"]) == 10


def test_vqa_without_annotations_and_split_placeholder(small_world: WorldPaths) -> None:
    data = load_vqa(
        small_world.vqa_questions("test"),
        None,
        small_world.root,
        "images/synth_{split}_{image_id:012d}.png",
        limit=4,
    )
    assert len(data) == 4
    assert set(data.column_names) == {"question_id", "image_id", "question", "image"}
    _assert_rgb64(data[3]["image"])


def test_vqa_errors_name_the_problem(small_world: WorldPaths, tmp_path: Path) -> None:
    questions, annotations = small_world.vqa_questions("val"), small_world.vqa_annotations("val")
    with pytest.raises(UserError, match="image_pattern"):
        load_vqa(questions, annotations, small_world.root, "{imageid}.png")
    with pytest.raises(UserError, match="image not found"):
        load_vqa(
            questions, annotations, small_world.root, "val2014/COCO_val2014_{image_id:012d}.jpg"
        )
    other = small_world.vqa_annotations("train")
    with pytest.raises(UserError, match="no annotation for question_id"):
        load_vqa(questions, other, small_world.root, small_world.image_pattern("val"))


def test_pretrain_corpus_rows(small_world: WorldPaths) -> None:
    data = load_pretrain_corpus(small_world.pretrain_json, small_world.root)
    corpus = json.loads(small_world.pretrain_json.read_text())
    assert data.column_names == ["image", "instruction", "response"] and len(data) == len(corpus)
    assert "caption" in data["instruction"] and not any("<image>" in i for i in data["instruction"])
    assert any(i.endswith("?") for i in data["instruction"])
    _assert_rgb64(data[0]["image"])
    assert len(load_pretrain_corpus(small_world.pretrain_json, small_world.root, limit=7)) == 7


def test_scenes_load_back_equal_to_the_sampled_ones(small_world: WorldPaths) -> None:
    import numpy as np

    scenes = load_scenes(small_world.scenes_json)
    image_id = next(iter(SMALL_SPEC.image_ids("val")))
    expected = sample_scene(np.random.default_rng([SMALL_SPEC.seed, image_id]), image_id)
    assert scenes[image_id] == expected and isinstance(expected, Scene)


@pytest.mark.parametrize("loader", ["karpathy", "vqa", "pretrain", "scenes"])
def test_missing_and_malformed_files_raise_user_errors(loader: str, tmp_path: Path) -> None:
    calls = {
        "karpathy": lambda p: load_karpathy_captions(p, tmp_path, "val"),
        "vqa": lambda p: load_vqa(p, None, tmp_path, "{image_id}.png"),
        "pretrain": lambda p: load_pretrain_corpus(p, tmp_path),
        "scenes": load_scenes,
    }
    missing = tmp_path / "missing.json"
    with pytest.raises(UserError, match="not found: .*missing.json"):
        calls[loader](missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(UserError, match="broken.json is not valid JSON"):
        calls[loader](broken)
    wrong_shape = tmp_path / "wrong.json"
    wrong_shape.write_text('{"something": []}' if loader != "pretrain" else "{}")
    with pytest.raises(UserError, match="wrong.json"):
        calls[loader](wrong_shape)
