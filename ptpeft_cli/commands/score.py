"""`ptpeft score`: official-format predictions vs official annotations; last line is JSON."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ptpeft_cli.tasks import get_task


def score_command(cfg: DictConfig) -> None:
    # The task's scoring options (spice, meteor) come from the command line, the rest is unused.
    task = get_task(OmegaConf.create({"name": cfg.task, "instruction": "", "spice": cfg.spice, "meteor": cfg.meteor}))
    questions = Path(cfg.questions) if cfg.questions else None
    result = task.score_files(Path(cfg.predictions), Path(cfg.annotations), questions)
    print(json.dumps(result, sort_keys=True))
