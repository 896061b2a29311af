"""Dense patch supervision for the tiny vision tower.

Why: contrastive pre-training teaches the tower *whether* an image holds a red triangle, but a
tiny language model reads the image through individual patch tokens, and shape only lived in the
spatial layout of several patches (a linear probe decoded it from a 3x3 patch window, not from one
patch). Training each patch token to name the shape and colour of the object under it puts that
information where the language model can read it, the way dense objectives (segmentation,
masked-patch prediction) shape the patch features of real vision encoders.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ptpeft_cli.synthetic import vocabulary
from ptpeft_cli.synthetic.world import BACKGROUND_RGB, Scene

FOREGROUND_DISTANCE = 40.0  # RGB distance from the background colour (noise std is 8)
MIN_OBJECT_PIXELS = 6  # of a patch's pixels, for the patch to be labelled with that object
SHAPE_CLASSES = ("background", *vocabulary.SHAPES)
COLOUR_CLASSES = ("background", *vocabulary.COLOURS)


def patch_labels(scenes: list[Scene], images: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(shape, colour) class per patch, row-major like CLIP's patch embedding: (N, grid*grid) each.

    A pixel belongs to the nearest object centre if it differs from the background; a patch takes
    the object owning most of its pixels (background below MIN_OBJECT_PIXELS)."""
    n, _, height, width = images.shape
    grid_h, grid_w = height // patch, width // patch
    pixels = images.permute(0, 2, 3, 1).numpy().astype(np.float32)
    foreground = np.linalg.norm(pixels - np.array(BACKGROUND_RGB, dtype=np.float32), axis=-1) > FOREGROUND_DISTANCE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    shapes = np.zeros((n, grid_h * grid_w), dtype=np.int64)
    colours = np.zeros_like(shapes)
    for i, scene in enumerate(scenes):
        centres = np.array([[o.x * width, o.y * height] for o in scene.objects], dtype=np.float32)
        distance = (xs[None] - centres[:, 0, None, None]) ** 2 + (ys[None] - centres[:, 1, None, None]) ** 2
        owner = np.where(foreground[i], distance.argmin(axis=0), -1)
        blocks = owner.reshape(grid_h, patch, grid_w, patch).transpose(0, 2, 1, 3).reshape(grid_h * grid_w, -1)
        counts = np.stack([(blocks == k).sum(axis=1) for k in range(len(scene.objects))])  # (K, patches)
        winner, enough = counts.argmax(axis=0), counts.max(axis=0) >= MIN_OBJECT_PIXELS
        for k, obj in enumerate(scene.objects):
            take = enough & (winner == k)
            shapes[i, take] = SHAPE_CLASSES.index(obj.shape)
            colours[i, take] = COLOUR_CLASSES.index(obj.colour)
    return torch.from_numpy(shapes), torch.from_numpy(colours)


class PatchHeads(nn.Module):
    """Linear shape and colour classifiers on each patch token (discarded after the stage)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.shape = nn.Linear(hidden, len(SHAPE_CLASSES))
        self.colour = nn.Linear(hidden, len(COLOUR_CLASSES))

    def loss(self, patch_tokens: torch.Tensor, shapes: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        shape_logits = self.shape(patch_tokens).flatten(0, 1)
        colour_logits = self.colour(patch_tokens).flatten(0, 1)
        return (nn.functional.cross_entropy(shape_logits.float(), shapes.flatten())
                + nn.functional.cross_entropy(colour_logits.float(), colours.flatten()))

    @torch.no_grad()
    def accuracy(self, patch_tokens: torch.Tensor, shapes: torch.Tensor) -> float:
        """Shape accuracy on object patches only (background is the easy majority)."""
        predicted = self.shape(patch_tokens).argmax(-1)
        on_object = shapes > 0
        return float((predicted[on_object] == shapes[on_object]).float().mean())
