"""`task.dataset.kind=synthetic`: the generated world, written once in the official formats and
then read by the same loaders as real COCO / VQAv2; its scenes add grounded caption metrics."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import datasets

from ptpeft_cli.data.coco import load_karpathy_captions
from ptpeft_cli.data.sources import DataSource
from ptpeft_cli.data.vqa import load_vqa
from ptpeft_cli.errors import UserError
from ptpeft_cli.synthetic.writer import WorldPaths, WorldSpec, ensure_world


class SyntheticWorld(DataSource):
    kind = "synthetic"
    formats = frozenset({"captions", "questions"})

    @functools.cached_property
    def paths(self) -> WorldPaths:
        cfg = self.cfg
        spec = WorldSpec(seed=cfg.seed, image_size=cfg.image_size, n_pretrain=cfg.n_pretrain,
                         n_train=cfg.n_train, n_val=cfg.n_val, n_test=cfg.n_test)
        try:
            return ensure_world(Path(cfg.root), spec)
        except OSError as error:
            raise UserError(f"task.dataset.root={cfg.root} cannot hold the synthetic world "
                            f"({error.strerror or error}); point it (or PTPEFT_DATA) at a writable directory") from None

    def captions(self, split: str, limit: int | None) -> datasets.Dataset:
        return load_karpathy_captions(self.paths.karpathy_json, self.paths.root, split, limit=limit)

    def questions(self, split: str, limit: int | None) -> datasets.Dataset:
        paths, kind = self.paths, str(self.cfg.question_set)
        return load_vqa(paths.vqa_questions(split, kind=kind), paths.vqa_annotations(split, kind=kind), paths.root,
                        paths.image_pattern(split), limit=limit)

    def cache_dir(self) -> Path:
        """Inside the world's own directory: it goes when the world goes."""
        return self.paths.root / ".cache"

    @functools.cached_property
    def _scenes(self) -> dict[int, Any]:
        from ptpeft_cli.synthetic.scenes import load_scenes

        return load_scenes(self.paths.scenes_json)

    def grounded_caption_metrics(self, split: str, captions: dict[int, str]) -> dict[str, float]:
        """Object precision / recall: do the captions name objects the image holds?"""
        from ptpeft_cli.synthetic.grounding import object_precision_recall

        return object_precision_recall(captions, self._scenes)
