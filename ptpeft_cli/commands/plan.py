"""`ptpeft plan`: the jobs' composed train configs -> the planner -> a markdown plan on stdout."""

from __future__ import annotations

from omegaconf import DictConfig

from ptpeft_cli.errors import UserError


def plan_command(options: DictConfig, jobs: list[tuple[list[str], DictConfig]], title: str) -> None:
    from ptpeft_cli.planning.plan import plan
    from ptpeft_cli.planning.render import render

    if not int(options.text_tokens) > 0:
        raise UserError(f"text_tokens={options.text_tokens} must be > 0")
    print(render(plan(jobs, bench=options.bench, text_tokens=int(options.text_tokens)), title))
