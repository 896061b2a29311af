"""The written world: official formats, caching, atomicity and byte-level determinism."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from pycocotools.coco import COCO
from small_world_spec import SMALL_SPEC

from ptpeft_cli.errors import UserError
from ptpeft_cli.synthetic import writer
from ptpeft_cli.synthetic.questions import question_kind
from ptpeft_cli.synthetic.text import ANSWER_TYPES
from ptpeft_cli.synthetic.writer import (
    DOWNSTREAM_SPLITS,
    VQA_KINDS,
    WorldPaths,
    WorldSpec,
    ensure_world,
)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_fingerprint_changes_with_every_field() -> None:
    base = WorldSpec()
    assert base.fingerprint() == WorldSpec().fingerprint()
    changed = {
        replace(base, **{name: getattr(base, name) + 1}).fingerprint()
        for name in ("seed", "image_size", "n_pretrain", "n_train", "n_val", "n_test")
    }
    assert len(changed) == 6 and base.fingerprint() not in changed


@pytest.mark.parametrize("bad", [{"n_train": -1}, {"n_val": 1_000_000}, {"image_size": 8}])
def test_impossible_specs_are_user_errors(bad: dict[str, int]) -> None:
    with pytest.raises(UserError):
        WorldSpec(**bad)


def test_same_spec_gives_identical_bytes_and_another_seed_differs(
    small_world: WorldPaths, tmp_path: Path
) -> None:
    again = ensure_world(tmp_path / "again", SMALL_SPEC, workers=1, progress=False)
    assert _digest(again.root) == _digest(small_world.root)
    other = ensure_world(tmp_path / "other", replace(SMALL_SPEC, seed=4), workers=1, progress=False)
    differing = {
        name
        for name, digest in _digest(other.root).items()
        if _digest(small_world.root).get(name) != digest
    }
    assert small_world.scenes_json.name in differing and len(differing) > 50


def test_parallel_writing_gives_the_same_bytes(
    small_world: WorldPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "_PARALLEL_MIN_IMAGES", 0)
    monkeypatch.setattr(writer, "_CHUNK", 16)
    parallel = ensure_world(tmp_path, SMALL_SPEC, workers=2, progress=False)
    assert _digest(parallel.root) == _digest(small_world.root)


def test_a_complete_world_is_reused_not_rewritten(
    small_world: WorldPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "_records", lambda *a: pytest.fail("rewrote a complete world"))
    assert ensure_world(small_world.root.parent, SMALL_SPEC) == small_world
    assert small_world.root.name == SMALL_SPEC.fingerprint()


def test_a_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: object, paths: WorldPaths) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(writer._Documents, "write", crash)
    with pytest.raises(OSError, match="disk full"):
        ensure_world(tmp_path, replace(SMALL_SPEC, n_pretrain=2), workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_images_are_pngs_with_unique_ids_across_splits(small_world: WorldPaths) -> None:
    scenes = _json(small_world.scenes_json)
    expected = sum(SMALL_SPEC.count(s) for s in (*DOWNSTREAM_SPLITS, "pretrain"))
    assert len(scenes) == expected == len(list(small_world.images.glob("synth_*.png")))
    for split in (*DOWNSTREAM_SPLITS, "pretrain"):
        for image_id in SMALL_SPEC.image_ids(split):
            assert str(image_id) in scenes
            path = small_world.images / f"synth_{split}_{image_id:012d}.png"
            assert path.is_file()
    with Image.open(next(small_world.images.glob("*.png"))) as image:
        assert image.format == "PNG" and image.mode == "RGB" and image.size == (64, 64)


def test_karpathy_layout(small_world: WorldPaths) -> None:
    data = _json(small_world.karpathy_json)
    assert data["dataset"] == "coco"
    images = data["images"]
    assert Counter(i["split"] for i in images) == {"train": 20, "val": 5, "test": 5}
    assert [i["imgid"] for i in images] == list(range(len(images)))
    sentids = [s["sentid"] for i in images for s in i["sentences"]]
    assert len(sentids) == len(set(sentids)) == 5 * len(images)
    for image in images:
        assert (small_world.root / image["filepath"] / image["filename"]).is_file()
        assert image["sentids"] == [s["sentid"] for s in image["sentences"]]
        for sentence in image["sentences"]:
            assert sentence["imgid"] == image["imgid"]
            assert (
                sentence["tokens"]
                == sentence["raw"].rstrip(".").replace(",", "").replace(":", "").split()
            )


@pytest.mark.parametrize("split", DOWNSTREAM_SPLITS)
def test_caption_annotations_load_with_pycocotools(small_world: WorldPaths, split: str) -> None:
    coco = COCO(str(small_world.caption_annotations(split)))
    assert len(coco.getImgIds()) == SMALL_SPEC.count(split)
    assert all(len(coco.imgToAnns[i]) == 5 for i in coco.getImgIds())
    karpathy = {
        i["cocoid"]: [s["raw"] for s in i["sentences"]]
        for i in _json(small_world.karpathy_json)["images"]
    }
    for image_id in coco.getImgIds():
        assert [a["caption"] for a in coco.imgToAnns[image_id]] == karpathy[image_id]


class _Skipped:
    """Stands in for METEOR (slow Java) and SPICE (downloads CoreNLP) in COCOEvalCap."""

    def compute_score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        return 0.0, [0.0] * len(gts)

    def method(self) -> str:
        return "skipped"


def test_cocoevalcap_scores_the_written_annotations(
    small_world: WorldPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pycocoevalcap import eval as coco_eval

    monkeypatch.setattr(coco_eval, "Meteor", _Skipped)
    monkeypatch.setattr(coco_eval, "Spice", _Skipped)
    coco = COCO(str(small_world.caption_annotations("train")))
    results = [
        {"image_id": i, "caption": coco.imgToAnns[i][0]["caption"]} for i in coco.getImgIds()
    ]
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(results))
    evaluator = coco_eval.COCOEvalCap(coco, coco.loadRes(str(results_file)))
    evaluator.evaluate()
    assert evaluator.eval["CIDEr"] > 0.5
    assert evaluator.eval["Bleu_4"] > 0.3


@pytest.mark.parametrize("kind", VQA_KINDS)
@pytest.mark.parametrize("split", DOWNSTREAM_SPLITS)
def test_vqa_questions_and_annotations_match(
    small_world: WorldPaths, split: str, kind: str
) -> None:
    questions = _json(small_world.vqa_questions(split, kind))
    annotations = _json(small_world.vqa_annotations(split, kind))
    assert questions["task_type"] == "Open-Ended" and questions["data_type"] == "mscoco"
    assert questions["data_subtype"] == annotations["data_subtype"] == split
    assert {"info", "license"} <= set(questions) & set(annotations)
    by_id = {a["question_id"]: a for a in annotations["annotations"]}
    assert [q["question_id"] for q in questions["questions"]] == list(by_id)
    assert set(SMALL_SPEC.image_ids(split)) == {q["image_id"] for q in questions["questions"]}
    for question in questions["questions"]:
        annotation = by_id[question["question_id"]]
        assert annotation["image_id"] == question["image_id"]
        assert annotation["answer_type"] in ANSWER_TYPES
        assert question["question"].startswith(annotation["question_type"])
        answers = annotation["answers"]
        assert [a["answer_id"] for a in answers] == list(range(1, 11))
        assert {a["answer_confidence"] for a in answers} <= {"yes", "maybe", "no"}
        words = Counter(a["answer"] for a in answers)
        assert annotation["multiple_choice_answer"] == words.most_common(1)[0][0]


def test_pretrain_corpus_is_llava_format(small_world: WorldPaths) -> None:
    corpus = json.loads(small_world.pretrain_json.read_text())
    assert {entry["image"] for entry in corpus} == {
        f"images/synth_pretrain_{i:012d}.png" for i in SMALL_SPEC.image_ids("pretrain")
    }
    assert len({entry["id"] for entry in corpus}) == len(corpus) >= 5 * SMALL_SPEC.n_pretrain
    for entry in corpus:
        human, gpt = entry["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n")
        assert gpt["from"] == "gpt" and gpt["value"]


@pytest.mark.parametrize("split", DOWNSTREAM_SPLITS)
def test_default_vqa_is_compositional_and_the_probe_holds_pretrain_kinds(
    small_world: WorldPaths, split: str
) -> None:
    default = _json(small_world.vqa_questions(split))["questions"]
    probe = _json(small_world.vqa_questions(split, "pretrain_kinds"))["questions"]
    assert small_world.vqa_questions(split) == small_world.vqa_questions(split, "compositional")
    assert all(question_kind(q["question"]) for q in default)
    assert not any(question_kind(q["question"]) for q in probe)
    assert {q["image_id"] for q in default} == {q["image_id"] for q in probe}
    assert not {q["question_id"] for q in default} & {q["question_id"] for q in probe}


def test_unknown_vqa_kind_is_a_user_error(small_world: WorldPaths) -> None:
    with pytest.raises(UserError, match="pretrain_kinds"):
        small_world.vqa_questions("test", "captions")


def test_worlds_written_before_the_compositional_kinds_are_not_reused() -> None:
    """Format 1 fingerprints (the VQA files held the pre-training kinds): a cached world under
    such a name must never be read as the current format."""
    assert writer.FORMAT_VERSION >= 2
    assert WorldSpec().fingerprint() != "971099980fd3"
    assert WorldSpec(n_pretrain=0).fingerprint() != "867a27a1c3e6"
