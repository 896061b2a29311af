"""Retention: does the tuned model still do what the pre-trained one could?

PT-PEFT's argument is that weight-changing methods collapse the pre-trained representation space
and lose general ability with it. Each probe is a task evaluated like a zero-shot model on a few
examples after tuning; the `method=none` run holds the same numbers before tuning.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ptpeft_cli.config import TaskConfig, conf_dir
from ptpeft_cli.errors import UserError
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.tasks import get_task
from ptpeft_cli.training.batches import evaluate_on_task
from ptpeft_cli.training.hardware import Hardware

log = logging.getLogger("ptpeft")


def probe_task_config(task_cfg: DictConfig, probe: Any, limit: int) -> DictConfig:
    """The probe's task: its own yaml, on the run's dataset (plus the probe's overrides), limited
    to `limit` eval examples, with the cheap metrics only (no METEOR/SPICE)."""
    overrides = OmegaConf.to_container(OmegaConf.create(probe or {}), resolve=True)
    assert isinstance(overrides, dict)
    name = str(overrides.pop("task"))
    own = OmegaConf.load(conf_dir() / "task" / f"{name}.yaml")
    cfg = OmegaConf.merge(OmegaConf.structured(TaskConfig), own, {"dataset": task_cfg.dataset},
                          overrides, {"name": name, "eval_split": task_cfg.eval_split, "eval_limit": limit,
                                      "meteor": False, "spice": False})
    assert isinstance(cfg, DictConfig)
    return cfg


def retention_metrics(loaded: LoadedModel, cfg: DictConfig, hardware: Hardware) -> dict[str, float]:
    """`retention/<probe>/<metric>` for every probe the run's dataset can serve."""
    metrics: dict[str, float] = {}
    for probe_name, probe in cfg.retention.probes.items():
        probe_cfg = probe_task_config(cfg.task, {"task": probe_name, **dict(probe or {})}, int(cfg.retention.limit))
        if probe_cfg.name == cfg.task.name and probe_cfg.dataset == cfg.task.dataset:
            continue  # the run's own eval split already measures it
        try:
            task = get_task(probe_cfg, cfg.model.instructions)
            data = task.load()
        except UserError as error:
            log.info("retention probe %s skipped: %s", probe_name, error)
            continue
        run_cfg = OmegaConf.merge(cfg, {"task": probe_cfg})
        _, scores = evaluate_on_task(loaded, task, data, run_cfg, hardware)
        metrics.update({f"retention/{probe_name}/{key.removeprefix('eval/')}": value for key, value in scores.items()})
    return metrics
