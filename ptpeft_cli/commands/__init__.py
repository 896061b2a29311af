"""Command implementations: thin functions that hand a composed config to the layers below."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


def train_entry(cfg: DictConfig) -> Any:
    from ptpeft_cli.commands.train import train_entry as entry

    return entry(cfg)


def pretrain_entry(cfg: DictConfig) -> Any:
    from ptpeft_cli.commands.pretrain import pretrain_entry as entry

    return entry(cfg)


def eval_command(cfg: DictConfig) -> None:
    from ptpeft_cli.commands.evaluate import eval_command as command

    command(cfg)


def score_command(cfg: DictConfig) -> None:
    from ptpeft_cli.commands.score import score_command as command

    command(cfg)


def analyze_command(cfg: DictConfig) -> None:
    from ptpeft_cli.commands.analyze import analyze_command as command

    command(cfg)


def report_command(cfg: DictConfig) -> None:
    from ptpeft_cli.commands.report import report_command as command

    command(cfg)


def plan_command(options: DictConfig, jobs: list[tuple[list[str], DictConfig]], title: str) -> None:
    from ptpeft_cli.commands.plan import plan_command as command

    command(options, jobs, title)


def tune_command(cfg: DictConfig) -> None:
    from ptpeft_cli.commands.tune import tune_command as command

    command(cfg)
