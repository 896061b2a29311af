"""`ptpeft report runs=DIR out=DIR`: tables built only from run dirs."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ptpeft_cli.errors import UserError


def report_command(cfg: DictConfig) -> None:
    from ptpeft_cli.reporting.report import build_report, update_markdown

    roots = [Path(p) for p in cfg.runs]
    if not roots:
        raise UserError("ptpeft report needs runs=DIR (repeatable) or runs=[A,B]")
    report = build_report(roots, Path(cfg.out))
    print(report)
    if cfg.update_doc:
        update_markdown(Path(cfg.update_doc), report, cfg.doc_block)
        print(f"updated: {cfg.update_doc}")
    print(f"report dir: {cfg.out}")
