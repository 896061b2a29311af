"""Scene-grounded object precision/recall on hand-counted captions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ptpeft_cli.synthetic.grounding import caption_mentions, object_precision_recall


@dataclass(frozen=True)
class Obj:
    """Any object with .colour and .shape will do (the world's SceneObject has more fields)."""

    colour: str
    shape: str


@dataclass(frozen=True)
class SceneLike:
    objects: tuple[Obj, ...]


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("a red circle", {("red", "circle")}),
        ("A large red circle and two blue squares.", {("red", "circle"), ("blue", "square")}),
        ("a red large circle", {("red", "circle")}),
        ("a red big circle", {("red", "circle")}),  # size synonym between colour and shape
        ("grey crosses", {("gray", "cross")}),  # colour synonym, plural shape
        ("red and blue circles", {("blue", "circle")}),  # "red and" is not a mention
        ("a red small large circle", set()),  # at most one size word between
        ("a circle that is red", set()),
        ("red circle, red circle, red circle", {("red", "circle")}),  # repeats are one claim
        ("", set()),
    ],
)
def test_caption_mentions(caption: str, expected: set[tuple[str, str]]) -> None:
    assert caption_mentions(caption) == expected


def test_micro_averaged_precision_and_recall() -> None:
    scenes = {
        1: SceneLike((Obj("red", "circle"), Obj("blue", "square"))),
        2: (Obj("green", "triangle"),),  # a plain sequence of objects works too
        3: SceneLike((Obj("yellow", "diamond"), Obj("white", "cross"), Obj("gray", "circle"))),
    }
    captions = {
        1: "a red circle and a green square",  # 1 of 2 mentions right; names 1 of 2 objects
        2: "something on a dark background",  # no mention: no precision term; 0 of 1 objects
        3: "a yellow diamond, a white cross and a grey circle",  # 3 of 3; 3 of 3
    }
    scores = object_precision_recall(captions, scenes)
    assert scores["object_precision"] == pytest.approx(4 / 5)
    assert scores["object_recall"] == pytest.approx(4 / 6)


def test_only_captioned_images_count() -> None:
    scenes = {1: (Obj("red", "circle"),), 2: (Obj("blue", "square"),)}
    assert object_precision_recall({1: "a red circle"}, scenes) == {
        "object_precision": 1.0,
        "object_recall": 1.0,
    }


def test_nothing_named_gives_zero_not_nan() -> None:
    scores = object_precision_recall({1: "nothing here"}, {1: (Obj("red", "circle"),)})
    assert scores == {"object_precision": 0.0, "object_recall": 0.0}


def test_real_world_scene_objects() -> None:
    from ptpeft_cli.synthetic import world
    scene = world.Scene(
        image_id=5,
        objects=(world.SceneObject(shape="square", colour="purple", size="small", x=0.2, y=0.5),),
        background="plain",
    )
    scores = object_precision_recall({5: "a small purple square"}, {5: scene})
    assert scores == {"object_precision": 1.0, "object_recall": 1.0}


def test_caption_without_scene_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"1 captioned image\(s\) have no scene \(e.g. 9\)"):
        object_precision_recall({9: "a red circle"}, {})
