"""`ptpeft eval run_dir=PATH`: rebuild a finished run's model from its saved weights and config,
regenerate, rescore, and compare with the metrics it recorded."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ptpeft_cli.commands import run_parts as parts
from ptpeft_cli.data.tasks import load_task_data
from ptpeft_cli.errors import UserError
from ptpeft_cli.methods import get_method
from ptpeft_cli.models import get_family
from ptpeft_cli.training.hardware import resolve_hardware, seed_everything


def eval_command(cfg: DictConfig) -> None:
    run_dir = Path(cfg.run_dir)
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"run_dir={run_dir} is not a finished ptpeft run (no .hydra/config.yaml)")
    run_cfg = OmegaConf.load(config_path)
    hardware = resolve_hardware(run_cfg.hardware.device, run_cfg.hardware.precision)
    seed_everything(run_cfg.trainer.seed)
    loaded = get_family(run_cfg.model.family).load(run_cfg.model)
    get_method(run_cfg.method.name).load(loaded, run_cfg.method, run_dir / "weights")
    loaded.model.to(hardware.device)
    data = load_task_data(run_cfg.task)
    predictions = parts.predict(loaded, data, run_cfg, hardware)
    metrics = parts.score(data, predictions, run_cfg.task.spice, run_cfg.task.get('meteor', True))
    recorded_path = run_dir / "metrics.json"
    recorded = json.loads(recorded_path.read_text()) if recorded_path.is_file() else {}
    print(f"{'metric':<40} {'recomputed':>12} {'recorded':>12}")
    for key in sorted(metrics):
        before = recorded.get(key)
        shown = f"{before:12.4f}" if isinstance(before, (int, float)) else f"{'-':>12}"
        print(f"{key:<40} {metrics[key]:12.4f} {shown}")
    identical = all(recorded.get(k) == v for k, v in metrics.items())
    print(json.dumps({"identical": identical, **metrics}, sort_keys=True))
