"""`ptpeft score`: official-format predictions vs official annotations; last line is JSON."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from ptpeft_cli.errors import UserError


def score_command(cfg: DictConfig) -> None:
    from ptpeft_cli.evaluation.score import score_caption_files, score_vqa_files

    if cfg.task == "vqa":
        if not cfg.questions:
            raise UserError("ptpeft score task=vqa needs questions=<VQAv2 questions JSON>")
        result = score_vqa_files(Path(cfg.predictions), Path(cfg.annotations), Path(cfg.questions))
    elif cfg.task == "captioning":
        result = score_caption_files(Path(cfg.predictions), Path(cfg.annotations), spice=bool(cfg.spice), meteor=bool(cfg.meteor))
    else:
        raise UserError(f"task={cfg.task!r} is not allowed; choose one of: captioning, vqa")
    print(json.dumps(result, sort_keys=True))
