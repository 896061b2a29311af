"""The closed vocabulary of the synthetic world.

Shared by the world generator, the tokenizer and the scene-grounded metrics, so a word that
names a colour or a shape means the same thing everywhere.
"""

from __future__ import annotations

# Colour name -> RGB. Distinct hues so a 64x64 image keeps them apart after resizing.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (235, 220, 50),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
}
# Words that name the same colour (captions and human answers use them).
COLOUR_SYNONYMS: dict[str, str] = {"grey": "gray"}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "diamond")
SHAPE_PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "cross": "crosses",
    "diamond": "diamonds",
}
SIZES: tuple[str, ...] = ("small", "large")
SIZE_SYNONYMS: dict[str, str] = {"big": "large", "little": "small"}

# Horizontal and vertical thirds of the image.
HORIZONTAL: tuple[str, ...] = ("left", "middle", "right")
VERTICAL: tuple[str, ...] = ("top", "middle", "bottom")

NUMBER_WORDS: dict[int, str] = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four"}
MAX_OBJECTS = 3


def canonical_colour(word: str) -> str | None:
    """Map a colour word or synonym to its canonical name; None if it is not a colour."""
    word = COLOUR_SYNONYMS.get(word, word)
    return word if word in COLOURS else None


def canonical_shape(word: str) -> str | None:
    """Map a shape word, singular or plural, to its singular name; None if it is not a shape."""
    if word in SHAPES:
        return word
    for singular, plural in SHAPE_PLURALS.items():
        if word == plural:
            return singular
    return None
