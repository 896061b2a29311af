"""`ptpeft eval run_dir=PATH`: rebuild a finished run's model from its saved weights and config,
regenerate, rescore, and compare with the metrics it recorded."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from ptpeft_cli import rundir
from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.base import model_config_for
from ptpeft_cli.models import get_family
from ptpeft_cli.tasks import get_task
from ptpeft_cli.training.batches import evaluate_on_task, with_cached_images
from ptpeft_cli.training.hardware import resolve_hardware, seed_everything


def eval_command(cfg: DictConfig) -> None:
    run_dir = Path(cfg.run_dir)
    run_cfg = rundir.read_config(run_dir)
    hardware = resolve_hardware(run_cfg.hardware.device, run_cfg.hardware.precision)
    seed_everything(run_cfg.trainer.seed)
    task = get_task(run_cfg.task, run_cfg.model.get("instructions"))
    method = get_method(run_cfg.method.name)
    loaded = get_family(run_cfg.model.family).load(model_config_for(run_cfg.model, method, warn=False))  # as trained
    method.load(loaded, run_cfg.method, run_dir / rundir.WEIGHTS_DIR)
    loaded.model.to(hardware.device)
    data = task.load()
    if run_cfg.trainer.get("cache_images", True):
        data = with_cached_images(loaded, data)
    _, metrics = evaluate_on_task(loaded, task, data, run_cfg, hardware)
    recorded = rundir.read_metrics(run_dir)
    print(f"{'metric':<40} {'recomputed':>12} {'recorded':>12}")
    for key in sorted(metrics):
        before = recorded.get(key)
        shown = f"{before:12.4f}" if isinstance(before, (int, float)) else f"{'-':>12}"
        print(f"{key:<40} {metrics[key]:12.4f} {shown}")
    identical = all(recorded.get(k) == v for k, v in metrics.items())
    print(json.dumps({"identical": identical, **metrics}, sort_keys=True))
