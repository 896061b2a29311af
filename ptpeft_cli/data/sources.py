"""Dataset sources (`task.dataset.kind`): where a task's examples come from (registry: tasks/sources.py).

A source serves examples in the shapes the official loaders produce: `captions` (COCO Karpathy
rows: image_id, image, captions) and `questions` (VQAv2 rows: question_id, image_id, question,
image, answers, ...). Tasks ask for the shape they need, so a new source serves every task of
that shape and a new task works on every source that has its shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ptpeft_cli.errors import UserError

if TYPE_CHECKING:
    import datasets


class DataSource:
    """Base source: subclasses set `kind`/`formats` and implement the readers they offer."""

    kind: ClassVar[str]
    formats: ClassVar[frozenset[str]]

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def captions(self, split: str, limit: int | None) -> datasets.Dataset:
        raise UserError(f"task.dataset.kind={self.kind} holds no captions")

    def questions(self, split: str, limit: int | None) -> datasets.Dataset:
        raise UserError(f"task.dataset.kind={self.kind} holds no questions")

    def check_question_set(self) -> None:
        """Official files hold one question set; asking for another is a mistake, not a no-op."""
        if str(getattr(self.cfg, "question_set", "compositional")) != "compositional":
            raise UserError(f"task.dataset.question_set={self.cfg.question_set!r}: task.dataset.kind={self.kind} "
                            "has one question set (leave question_set at its default)")

    def grounded_caption_metrics(self, split: str, captions: dict[int, str]) -> dict[str, float]:
        """Metrics that need ground truth beyond reference captions; real data has none."""
        return {}


def require_path(cfg: Any, key: str, split: str | None = None) -> Path:
    """A configured file or directory that must exist; `{split}` in it is filled with the split."""
    value = getattr(cfg, key, None)
    if not value:
        raise UserError(f"task.dataset.{key} must be set for task.dataset.kind={cfg.kind}")
    resolved = Path(str(value).replace("{split}", split) if split else str(value))
    if not resolved.exists():
        raise UserError(f"task.dataset.{key}={resolved} does not exist")
    return resolved


class KarpathyCaptions(DataSource):
    """COCO captions through the Karpathy split file (`dataset_coco.json`) and an image root."""

    kind = "coco_karpathy"
    formats = frozenset({"captions"})

    def captions(self, split: str, limit: int | None) -> datasets.Dataset:
        from ptpeft_cli.data.coco import load_karpathy_captions

        return load_karpathy_captions(require_path(self.cfg, "karpathy_json"), require_path(self.cfg, "image_root"),
                                      split, limit=limit)


class Vqav2Questions(DataSource):
    """VQAv2 question / annotation files per split and the COCO images they refer to."""

    kind = "vqav2"
    formats = frozenset({"questions"})

    def questions(self, split: str, limit: int | None) -> datasets.Dataset:
        from ptpeft_cli.data.vqa import load_vqa

        self.check_question_set()
        pattern = self.cfg.image_pattern or "COCO_val2014_{image_id:012d}.jpg"
        return load_vqa(require_path(self.cfg, "questions", split), require_path(self.cfg, "annotations", split),
                        require_path(self.cfg, "image_root", split), pattern, limit=limit)
