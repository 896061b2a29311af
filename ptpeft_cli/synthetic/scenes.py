"""The world's ground truth as written beside the official files (`scenes.json`)."""

from __future__ import annotations

from pathlib import Path

from ptpeft_cli.data.coco import read_json
from ptpeft_cli.errors import UserError
from ptpeft_cli.synthetic.world import Scene


def load_scenes(scenes_json: Path) -> dict[int, Scene]:
    """Ground-truth scenes by image id, for scene-grounded metrics."""
    scenes_json = Path(scenes_json)
    raw = read_json(scenes_json, "scenes")
    if not isinstance(raw, dict):
        raise UserError(f"{scenes_json}: expected a JSON object mapping image ids to scenes")
    try:
        return {int(image_id): Scene.from_dict(scene) for image_id, scene in raw.items()}
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{scenes_json}: malformed scene ({error!r})") from error
