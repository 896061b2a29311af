"""`ptpeft analyze`: compare the representation spectra of finished runs."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from ptpeft_cli.errors import UserError


def analyze_command(cfg: DictConfig) -> None:
    from ptpeft_cli.analysis.compare import analyze_runs, find_run_dirs

    roots = [Path(p) for p in cfg.run_dirs] + ([Path(cfg.sweep_dir)] if cfg.sweep_dir else [])
    if not roots:
        raise UserError("ptpeft analyze needs run_dir=PATH (repeatable), run_dirs=[A,B] or sweep_dir=PATH")
    out_dir = Path(cfg.out_dir) if cfg.out_dir else (
        Path(cfg.sweep_dir) if cfg.sweep_dir else Path("outputs/analyze") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    runs = find_run_dirs(roots)  # validated before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    analyze_runs(runs, out_dir)
    print(f"analysis dir: {out_dir}")
