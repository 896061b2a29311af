"""The synthetic world: scenes of 1-3 coloured shapes, sampled from a seed and rendered with PIL.

Scenes are small, non-overlapping and unambiguous on purpose: a ~2M-parameter LMM with 8x8 patches
on 64x64 images must be able to learn colour, shape, size, count and position from them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ptpeft_cli.synthetic import vocabulary

BACKGROUNDS: tuple[str, ...] = ("plain", "noisy")
# Diameter ranges in pixels at the reference 64x64 size; scaled with the image size.
REFERENCE_SIZE = 64
DIAMETER_RANGE: dict[str, tuple[int, int]] = {"small": (14, 18), "large": (22, 28)}
# Gap kept between the bounding boxes of two objects, and between an object and the border.
GAP_PX = 2
# A centre within this many pixels of a third's boundary would make "left"/"middle" ambiguous.
THIRD_MARGIN_PX = 2.5
BACKGROUND_RGB = (22, 22, 30)
NOISE_STD = 8.0
SUPERSAMPLE = 4  # draw shapes at 4x and downsample, so edges are anti-aliased like a photo
_BATCH = 64
_RENDER_STREAM = 1
_MAX_BATCHES = 4
_COLOUR_NAMES: tuple[str, ...] = tuple(vocabulary.COLOURS)


def _third(coordinate: float, names: tuple[str, ...]) -> str:
    return names[min(int(coordinate * 3), 2)]


@dataclass(frozen=True)
class SceneObject:
    """One shape; x, y are its centre in [0, 1] (y grows downwards, as in images)."""

    shape: str
    colour: str
    size: str
    x: float
    y: float

    @property
    def horizontal(self) -> str:
        """Which horizontal third holds the centre: left, middle or right."""
        return _third(self.x, vocabulary.HORIZONTAL)

    @property
    def vertical(self) -> str:
        """Which vertical third holds the centre: top, middle or bottom."""
        return _third(self.y, vocabulary.VERTICAL)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "colour": self.colour,
            "size": self.size,
            "x": self.x,
            "y": self.y,
        }


@dataclass(frozen=True)
class Scene:
    """One image's ground truth; the grounded metrics read it back from scenes.json."""

    image_id: int
    objects: tuple[SceneObject, ...]
    background: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "background": self.background,
            "objects": [obj.to_dict() for obj in self.objects],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        objects = tuple(
            SceneObject(
                shape=str(o["shape"]),
                colour=str(o["colour"]),
                size=str(o["size"]),
                x=float(o["x"]),
                y=float(o["y"]),
            )
            for o in data["objects"]
        )
        return cls(
            image_id=int(data["image_id"]), objects=objects, background=str(data["background"])
        )


_MAX_RADIUS = np.array([DIAMETER_RANGE[size][1] / 2 for size in vocabulary.SIZES])
_THIRD_BOUNDARIES = np.array([REFERENCE_SIZE / 3, 2 * REFERENCE_SIZE / 3])


def _candidates(rng: np.random.Generator) -> np.ndarray:
    """A batch of candidate objects as rows (shape, colour, size index, cx, cy in reference
    pixels), drawn in one vectorised call because sampling is the hot loop of world writing.

    Centres keep the whole object inside the image, and rows whose centre lies near a third
    boundary are dropped so every position word is unambiguous.
    """
    u = rng.random((_BATCH, 5))
    shape = (u[:, 0] * len(vocabulary.SHAPES)).astype(int)
    colour = (u[:, 1] * len(_COLOUR_NAMES)).astype(int)
    size = (u[:, 2] * len(vocabulary.SIZES)).astype(int)
    margin = _MAX_RADIUS[size] + GAP_PX
    centres = margin[:, None] + u[:, 3:5] * (REFERENCE_SIZE - 2 * margin[:, None])
    distance_to_boundary = np.abs(centres[:, :, None] - _THIRD_BOUNDARIES).min(axis=(1, 2))
    keep = distance_to_boundary >= THIRD_MARGIN_PX
    return np.column_stack([shape, colour, size, centres])[keep]


def _fits(candidate: np.ndarray, placed: list[np.ndarray]) -> bool:
    """Distinct (colour, shape) and bounding boxes (largest diameter of the size class plus a
    gap) that do not touch any placed object."""
    half = _MAX_RADIUS[int(candidate[2])] + GAP_PX / 2
    for other in placed:
        if candidate[0] == other[0] and candidate[1] == other[1]:
            return False
        reach = half + _MAX_RADIUS[int(other[2])] + GAP_PX / 2
        if abs(candidate[3] - other[3]) < reach and abs(candidate[4] - other[4]) < reach:
            return False
    return True


def _to_object(row: np.ndarray) -> SceneObject:
    return SceneObject(
        shape=vocabulary.SHAPES[int(row[0])],
        colour=_COLOUR_NAMES[int(row[1])],
        size=vocabulary.SIZES[int(row[2])],
        x=round(float(row[3]) / REFERENCE_SIZE, 4),
        y=round(float(row[4]) / REFERENCE_SIZE, 4),
    )


def sample_scene(
    rng: np.random.Generator, image_id: int, max_objects: int = vocabulary.MAX_OBJECTS
) -> Scene:
    """A scene of 1..max_objects non-overlapping objects with distinct (colour, shape) pairs.

    Rejection sampling: candidates are taken in order until one clears the objects already
    placed; if none fits after a few batches (crowded large objects), placement restarts with
    the same count, so the object count stays uniform.
    """
    if not 1 <= max_objects <= max(vocabulary.NUMBER_WORDS):
        # Texts count in words up to the largest NUMBER_WORDS entry, and more objects may not fit.
        raise ValueError(f"max_objects must be in 1..{max(vocabulary.NUMBER_WORDS)}, got {max_objects}")
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    n_objects = int(rng.integers(1, max_objects + 1))
    while True:
        placed: list[np.ndarray] = []
        for _ in range(_MAX_BATCHES):
            for candidate in _candidates(rng):
                if _fits(candidate, placed):
                    placed.append(candidate)
                    if len(placed) == n_objects:
                        objects = tuple(_to_object(row) for row in placed)
                        return Scene(image_id=image_id, objects=objects, background=background)


def _shape_polygon(shape: str, cx: float, cy: float, d: float) -> list[tuple[float, float]] | None:
    """Vertices for polygon shapes (None for circle/square, drawn with their own primitives)."""
    r = d / 2
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "cross":
        t = d / 6  # half arm thickness: arms are a third of the diameter wide
        return [
            (cx - t, cy - r),
            (cx + t, cy - r),
            (cx + t, cy - t),
            (cx + r, cy - t),
            (cx + r, cy + t),
            (cx + t, cy + t),
            (cx + t, cy + r),
            (cx - t, cy + r),
            (cx - t, cy + t),
            (cx - r, cy + t),
            (cx - r, cy - t),
            (cx - t, cy - t),
        ]
    return None


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, d: float) -> None:
    """Fill one shape of diameter d centred at (cx, cy) with 255 on a coverage mask."""
    r = d / 2
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif shape == "square":
        side = d * 0.9  # a full-diameter square looks much bigger than the other shapes
        draw.rectangle((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), fill=255)
    else:
        polygon = _shape_polygon(shape, cx, cy, d)
        if polygon is None:
            raise ValueError(f"unknown shape {shape!r}; known: {vocabulary.SHAPES}")
        draw.polygon(polygon, fill=255)


@functools.lru_cache(maxsize=16384)
def _coverage(shape: str, diameter_q: int, centre_x_q: int, centre_y_q: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1], shape (h, w, 1), of a shape inside its own small window.

    Arguments are in 1/SUPERSAMPLE pixels relative to the window's corner: the shape is drawn
    SUPERSAMPLE times larger and box-downsampled, so nothing finer than that grid is lost by
    quantising, and the cache (a few thousand masks) makes rendering cheap."""
    width = -(-(centre_x_q + (diameter_q + 1) // 2) // SUPERSAMPLE) + 1
    height = -(-(centre_y_q + (diameter_q + 1) // 2) // SUPERSAMPLE) + 1
    mask = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    _draw_shape(ImageDraw.Draw(mask), shape, centre_x_q, centre_y_q, diameter_q)
    coverage = np.asarray(mask.resize((width, height), Image.Resampling.BOX), dtype=np.float32)
    coverage = coverage[..., None] / 255
    coverage.flags.writeable = False
    return coverage


def render(scene: Scene, image_size: int = 64, seed: int = 0) -> Image.Image:
    """Draw the scene as an RGB image; identical inputs give identical pixels.

    The exact diameter within the size class and the background noise come from
    `default_rng([seed, image_id, 1])` (a stream apart from the scene sampler's), so the
    picture varies more than the scene description does.
    """
    rng = np.random.default_rng([seed, scene.image_id, _RENDER_STREAM])
    scale = image_size / REFERENCE_SIZE
    diameters = [rng.uniform(*DIAMETER_RANGE[obj.size]) * scale for obj in scene.objects]
    pixels = np.empty((image_size, image_size, 3), dtype=np.float32)
    pixels[:] = BACKGROUND_RGB
    if scene.background == "noisy":
        pixels += NOISE_STD * rng.standard_normal(pixels.shape, dtype=np.float32)
    for obj, diameter in zip(scene.objects, diameters, strict=True):
        cx, cy = obj.x * image_size, obj.y * image_size
        x0, y0 = int(cx - diameter / 2) - 1, int(cy - diameter / 2) - 1
        alpha = _coverage(
            obj.shape,
            round(diameter * SUPERSAMPLE),
            round((cx - x0) * SUPERSAMPLE),
            round((cy - y0) * SUPERSAMPLE),
        )
        # Objects lie inside the image by construction; clip anyway for hand-made scenes.
        top, left = max(0, -y0), max(0, -x0)
        y0, x0 = max(0, y0), max(0, x0)
        alpha = alpha[top : top + image_size - y0, left : left + image_size - x0]
        window = pixels[y0 : y0 + alpha.shape[0], x0 : x0 + alpha.shape[1]]
        window[:] = window * (1 - alpha) + np.asarray(vocabulary.COLOURS[obj.colour]) * alpha
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
