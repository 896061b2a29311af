"""Dataset sources (`task.dataset.kind`): where a task's examples come from (registry: tasks/sources.py).

A source serves examples in the shapes the official loaders produce: `captions` (COCO Karpathy
rows: image_id, image, captions) and `questions` (VQAv2 rows: question_id, image_id, question,
image, answers, ...). Tasks ask for the shape they need, so a new source serves every task of
that shape and a new task works on every source that has its shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ptpeft_cli.errors import MissingData, UserError

if TYPE_CHECKING:
    import datasets


class DataSource:
    """Base source: subclasses set `kind`/`formats` and implement the readers they offer."""

    kind: ClassVar[str]
    formats: ClassVar[frozenset[str]]
    # The split evaluated when `task.eval_split` is not set: the one the literature reports on.
    default_eval_split: ClassVar[str] = "test"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def captions(self, split: str, limit: int | None) -> datasets.Dataset:
        raise UserError(f"task.dataset.kind={self.kind} holds no captions")

    def questions(self, split: str, limit: int | None) -> datasets.Dataset:
        raise UserError(f"task.dataset.kind={self.kind} holds no questions")

    def published_rows(self, split: str) -> int | None:
        """Rows of `split` in the official release, known without reading it (`ptpeft plan` sizes
        evaluation with it); None where a source cannot know before reading."""
        return None

    def official_split(self, split: str) -> str:
        """The split's name in the official files and on evaluation servers (VQAv2 test-dev ->
        test-dev2015); it names result files written for a server."""
        return split

    def check_question_set(self) -> None:
        """Official files hold one question set; asking for another is a mistake, not a no-op."""
        if str(getattr(self.cfg, "question_set", "compositional")) != "compositional":
            raise UserError(f"task.dataset.question_set={self.cfg.question_set!r}: task.dataset.kind={self.kind} "
                            "has one question set (leave question_set at its default)")

    def grounded_caption_metrics(self, split: str, captions: dict[int, str]) -> dict[str, float]:
        """Metrics that need ground truth beyond reference captions; real data has none."""
        return {}

    def cache_dir(self) -> Path:
        """Where derived data (processed images) is cached: datasets' own cache by default,
        since real image folders are often read-only."""
        import datasets

        return Path(datasets.config.HF_DATASETS_CACHE) / "ptpeft"


def require_path(path: Path, what: str, origin: str, images: bool = False) -> Path:
    """`path` if it exists; else MissingData naming what was expected, where, and the config key
    it came from (`origin`, e.g. "task.dataset.root=/data/coco"), so the user knows what to fix."""
    if not path.exists():
        raise MissingData(f"{what} not found: {path} (from {origin})", images=images)
    return path


@contextmanager
def fetch_hint(files: str, images: str) -> Iterator[None]:
    """Add the `scripts/` helper that fetches what is missing to any MissingData raised inside
    (`files` for annotation files, `images` for images): the loaders know paths, the source knows
    which download lays them out."""
    try:
        yield
    except MissingData as error:
        raise MissingData(f"{error}; fetch it with: {images if error.images else files}", error.images) from None
