"""`ptpeft report runs=DIR out=DIR`: tables built only from run dirs."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ptpeft_cli.errors import UserError


def report_command(cfg: DictConfig) -> None:
    from ptpeft_cli.reporting.report import build_report

    roots = [Path(p) for p in cfg.runs]
    if not roots:
        raise UserError("ptpeft report needs runs=DIR (repeatable) or runs=[A,B]")
    print(build_report(roots, Path(cfg.out)))
    print(f"report dir: {cfg.out}")
