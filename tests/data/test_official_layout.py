"""The official COCO / Karpathy / VQAv2 layout behind one key (`task.dataset.root`), configured the
way a user types it (composed from CLI overrides), on a small tree written in that layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from official_tree import KARPATHY_SPLITS, QUESTIONS, OfficialTree, write_official_tree

from ptpeft_cli.cli import compose_config
from ptpeft_cli.errors import MissingData, UserError
from ptpeft_cli.tasks import get_task
from ptpeft_cli.tasks.base import Task, TaskData


def _task(*overrides: str) -> Task:
    cfg = compose_config("train", [*overrides, "task.meteor=false"])
    return get_task(cfg.task, cfg.model.instructions)


def _captioning(tree: OfficialTree, *overrides: str) -> Task:
    return _task("task=captioning", "task.dataset.kind=coco_karpathy", f"task.dataset.root={tree.coco}", *overrides)


def _vqa(tree: OfficialTree, *overrides: str) -> Task:
    return _task("task=vqa", "task.dataset.kind=vqav2", f"task.dataset.root={tree.vqa}",
                 f"task.dataset.image_root={tree.coco}", *overrides)


def _image_paths(data: TaskData, split: str = "eval") -> list[str]:
    table = data.eval if split == "eval" else data.train
    return [cell["path"] for cell in table.data.column("image").to_pylist()]


def test_karpathy_root_trains_on_train_plus_restval_and_evaluates_test_with_its_own_sentences(
        official_tree: OfficialTree) -> None:
    data = _captioning(official_tree).load()
    assert len(data.train) == 5 * len(official_tree.karpathy_ids("train", "restval"))
    assert data.eval_split == "test" and data.eval["example_id"] == official_tree.karpathy_ids("test")
    karpathy = json.loads(official_tree.karpathy_json.read_text())["images"]
    expected = {e["cocoid"]: [s["raw"] for s in e["sentences"]] for e in karpathy if e["split"] == "test"}
    assert dict(zip(data.eval["example_id"], data.eval["captions"], strict=True)) == expected
    assert _image_paths(data)[0] == str(official_tree.image("val2014", KARPATHY_SPLITS["test"][1][0]))
    assert set(data.train["target"]) >= {s["raw"] for e in karpathy if e["split"] == "restval" for s in e["sentences"]}


def test_restval_stays_out_when_asked_and_val_is_evaluated_from_the_same_file(official_tree: OfficialTree) -> None:
    data = _captioning(official_tree, "task.dataset.use_restval=false", "task.eval_split=val").load()
    assert len(data.train) == 5 * len(official_tree.karpathy_ids("train"))
    assert data.eval["example_id"] == official_tree.karpathy_ids("val")


def test_vqav2_root_trains_on_train_and_evaluates_on_val(official_tree: OfficialTree) -> None:
    task = _vqa(official_tree)
    data = task.load()
    assert len(data.train) == len(official_tree.question_ids("train2014"))
    assert data.eval_split == "val" and data.eval["example_id"] == official_tree.question_ids("val2014")
    first_val = official_tree.karpathy_ids("restval")[0]
    assert _image_paths(data)[0] == str(official_tree.image("val2014", first_val))
    assert all(len(answers) == 10 for answers in data.eval["answers"])
    scored = task.evaluate(data, dict.fromkeys(data.eval["example_id"], "yes"))
    assert 0 < scored["eval/vqa_accuracy"] < 100 and "eval/scored" not in scored


def test_every_vqav2_file_is_overridable_per_split_with_plain_paths(official_tree: OfficialTree,
                                                                     tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "my_val_annotations.json"
    moved.parent.mkdir()
    shutil.copy(official_tree.annotations("val2014"), moved)
    images = tmp_path / "val_images"
    shutil.copytree(official_tree.coco / "val2014", images)
    task = _task("task=vqa", "task.dataset.kind=vqav2", f"task.dataset.root={official_tree.vqa}",
                 f"task.dataset.files.val.annotations={moved}", f"task.dataset.files.val.images={images}",
                 f"task.dataset.files.train.images={official_tree.coco / 'train2014'}")
    data = task.load()
    assert data.eval["example_id"] == official_tree.question_ids("val2014")
    assert _image_paths(data)[0].startswith(str(images))


def test_train_on_val_holds_out_whole_val_images_for_evaluation(official_tree: OfficialTree) -> None:
    data = _vqa(official_tree, "task.dataset.train_on_val=true", "task.dataset.heldout=4").load()
    per_image = len(QUESTIONS)
    val_ids = official_tree.question_ids("val2014")
    held = val_ids[:2 * per_image]  # 4 questions round up to two whole images
    assert data.eval["example_id"] == held
    assert len(data.train) == len(official_tree.question_ids("train2014")) + len(val_ids) - len(held)
    held_images = {str(official_tree.image("val2014", qid // 1000)) for qid in held}
    assert held_images == set(_image_paths(data))
    assert not held_images & set(_image_paths(data, "train")), "no image is both trained and evaluated on"


def test_train_on_val_without_a_heldout_slice_cannot_evaluate_on_val(official_tree: OfficialTree) -> None:
    with pytest.raises(UserError, match="set task.dataset.heldout=N"):
        _vqa(official_tree, "task.dataset.train_on_val=true").load()


def test_test_dev_has_no_answers_so_it_is_not_scored_and_names_the_server_file(official_tree: OfficialTree) -> None:
    task = _vqa(official_tree, "task.eval_split=test-dev")
    data = task.load()
    assert data.eval["example_id"] == official_tree.question_ids("test-dev2015")
    assert _image_paths(data)[0] == str(official_tree.image("test2015", 1))
    assert task.evaluate(data, dict.fromkeys(data.eval["example_id"], "yes")) == {"eval/scored": 0}
    assert task.server_file(data) == "vqa_OpenEnded_mscoco_test-dev2015_ptpeft_results.json"


def test_unknown_vqav2_split_lists_the_official_ones(official_tree: OfficialTree) -> None:
    with pytest.raises(UserError, match="no split 'minival'; choose one of: train, val, test-dev, test"):
        _vqa(official_tree, "task.eval_split=minival").load()


def _break(tree: OfficialTree, what: str) -> Path:
    """Remove or empty one thing the runs need; return the path the error must name."""
    victims = {
        "karpathy": tree.karpathy_json,
        "val2014": tree.coco / "val2014",
        "image": tree.image("val2014", KARPATHY_SPLITS["test"][1][-1]),
        "train_image": tree.image("train2014", KARPATHY_SPLITS["train"][1][2]),
        "annotations": tree.annotations("val2014"),
        "questions": tree.questions("train2014"),
        "test2015": tree.coco / "test2015",
    }
    if what == "empty":
        path = tree.questions("val2014")
        path.write_text(json.dumps({**json.loads(path.read_text()), "questions": []}))
        return path
    victim = victims[what]
    shutil.rmtree(victim) if victim.is_dir() else victim.unlink()
    return victim


PREFLIGHT = [  # (what breaks, task, extra overrides, expected error text, fetch helper named)
    ("karpathy", "captioning", [], "Karpathy split file not found", "fetch_data.py karpathy --root"),
    ("val2014", "captioning", [], "directory {parent} does not exist", "fetch_data.py coco --root"),
    ("image", "captioning", [], "1 of 4 images of this split are missing", "fetch_data.py coco --root"),
    ("train_image", "vqa", [], "1 of 6 images of this split are missing", "fetch_data.py coco --root"),
    ("annotations", "vqa", [], "VQAv2 val annotations file not found", "fetch_data.py vqav2 --root"),
    ("questions", "vqa", [], "VQAv2 train questions file not found", "fetch_data.py vqav2 --root"),
    ("empty", "vqa", [], "holds no questions", "fetch_data.py vqav2 --root"),
    ("test2015", "vqa", ["task.eval_split=test-dev"], "COCO test2015 image directory not found",
     "fetch_data.py coco-test --root"),
]


@pytest.mark.parametrize("what,task_name,overrides,message,helper", PREFLIGHT, ids=[p[0] for p in PREFLIGHT])
def test_preflight_names_the_missing_path_and_the_helper_that_fetches_it(
        what: str, task_name: str, overrides: list[str], message: str, helper: str, tmp_path: Path) -> None:
    tree = write_official_tree(tmp_path)
    missing = _break(tree, what)
    task = _captioning(tree, *overrides) if task_name == "captioning" else _vqa(tree, *overrides)
    with pytest.raises(MissingData) as error:
        task.load()
    text = str(error.value)
    assert len(text.splitlines()) == 1
    assert message.format(parent=missing) in text and str(missing) in text
    assert f"; fetch it with: python scripts/{helper}" in text
