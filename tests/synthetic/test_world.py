"""Scene sampling and rendering: constraints the tiny LMM relies on, and determinism."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from ptpeft_cli.synthetic import vocabulary
from ptpeft_cli.synthetic.world import (
    BACKGROUND_RGB,
    DIAMETER_RANGE,
    GAP_PX,
    REFERENCE_SIZE,
    Scene,
    SceneObject,
    render,
    sample_scene,
)


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return [sample_scene(np.random.default_rng([0, i]), i) for i in range(600)]


def test_same_rng_seed_gives_same_scene_and_different_seed_differs() -> None:
    first = sample_scene(np.random.default_rng([1, 7]), 7)
    assert first == sample_scene(np.random.default_rng([1, 7]), 7)
    others = [sample_scene(np.random.default_rng([2, i]), 7) for i in range(5)]
    assert any(other != first for other in others)


def test_scenes_respect_the_vocabulary_and_are_unambiguous(scenes: list[Scene]) -> None:
    for scene in scenes:
        assert 1 <= len(scene.objects) <= vocabulary.MAX_OBJECTS
        assert scene.background in ("plain", "noisy")
        pairs = [(o.colour, o.shape) for o in scene.objects]
        assert len(set(pairs)) == len(pairs), "two objects share colour and shape"
        for obj in scene.objects:
            assert obj.colour in vocabulary.COLOURS and obj.shape in vocabulary.SHAPES
            assert obj.size in vocabulary.SIZES
            radius = DIAMETER_RANGE[obj.size][1] / 2 / REFERENCE_SIZE
            assert radius <= obj.x <= 1 - radius and radius <= obj.y <= 1 - radius
            # Centres stay clear of the third boundaries, so position words are unambiguous.
            for coordinate in (obj.x, obj.y):
                assert min(abs(coordinate - 1 / 3), abs(coordinate - 2 / 3)) > 1.5 / REFERENCE_SIZE
        for a, b in combinations(scene.objects, 2):
            reach = (DIAMETER_RANGE[a.size][1] + DIAMETER_RANGE[b.size][1]) / 2 + GAP_PX
            apart_x = abs(a.x - b.x) * REFERENCE_SIZE >= reach
            apart_y = abs(a.y - b.y) * REFERENCE_SIZE >= reach
            assert apart_x or apart_y, f"objects overlap in scene {scene.image_id}"


def test_every_attribute_value_occurs(scenes: list[Scene]) -> None:
    objects = [o for s in scenes for o in s.objects]
    assert {o.colour for o in objects} == set(vocabulary.COLOURS)
    assert {o.shape for o in objects} == set(vocabulary.SHAPES)
    assert {o.size for o in objects} == set(vocabulary.SIZES)
    assert {o.horizontal for o in objects} == set(vocabulary.HORIZONTAL)
    assert {o.vertical for o in objects} == set(vocabulary.VERTICAL)
    assert {len(s.objects) for s in scenes} == set(range(1, vocabulary.MAX_OBJECTS + 1))


def test_position_properties_name_the_third_holding_the_centre() -> None:
    obj = SceneObject("circle", "red", "small", x=0.1, y=0.9)
    assert (obj.horizontal, obj.vertical) == ("left", "bottom")
    obj = SceneObject("circle", "red", "small", x=0.5, y=0.2)
    assert (obj.horizontal, obj.vertical) == ("middle", "top")


def test_scene_round_trips_through_json(scenes: list[Scene]) -> None:
    for scene in scenes[:50]:
        assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_render_is_deterministic_rgb_and_depends_on_seed(scenes: list[Scene]) -> None:
    image = render(scenes[0], 64, seed=0)
    assert image.mode == "RGB" and image.size == (64, 64)
    assert image.tobytes() == render(scenes[0], 64, seed=0).tobytes()
    noisy = next(s for s in scenes if s.background == "noisy")
    assert render(noisy, 64, seed=0).tobytes() != render(noisy, 64, seed=1).tobytes()
    assert render(scenes[0], 128).size == (128, 128)


@pytest.mark.parametrize("colour", list(vocabulary.COLOURS))
def test_every_colour_is_drawn_visibly_at_the_object_centre(colour: str) -> None:
    scene = Scene(0, (SceneObject("circle", colour, "small", 0.5, 0.5),), "noisy")
    pixels = np.asarray(render(scene), dtype=float)
    centre = pixels[30:34, 30:34].reshape(-1, 3).mean(axis=0)
    assert np.abs(centre - vocabulary.COLOURS[colour]).max() < 2
    corner = pixels[:8, :8].reshape(-1, 3).mean(axis=0)
    assert np.abs(corner - BACKGROUND_RGB).max() < 5  # low-amplitude noise around a dark base
    assert np.abs(centre - corner).sum() > 150  # even gray stands out from the background


def _mask(shape: str, size: str) -> np.ndarray:
    scene = Scene(0, (SceneObject(shape, "white", size, 0.5, 0.5),), "plain")
    return np.asarray(render(scene), dtype=float).mean(axis=2) > 128


@pytest.mark.parametrize("size", vocabulary.SIZES)
def test_shapes_are_clearly_distinct(size: str) -> None:
    masks = {shape: _mask(shape, size) for shape in vocabulary.SHAPES}
    for a, b in combinations(vocabulary.SHAPES, 2):
        # Same centre and size class: the pixels where they differ are what the model sees
        # (a square's corners against a circle are the tightest pair).
        differing = (masks[a] ^ masks[b]).sum()
        smaller = min(masks[a].sum(), masks[b].sum())
        assert differing >= 0.15 * smaller, f"{a} and {b} look alike ({differing} pixels differ)"


def test_object_sizes_match_their_size_class() -> None:
    for size, (low, high) in DIAMETER_RANGE.items():
        mask = _mask("circle", size)
        width = mask.any(axis=0).sum()
        assert low - 2 <= width <= high + 1
