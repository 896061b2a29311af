"""Tasks: what is asked of the model and how the answer is judged (one module per task).

The rest of ptpeft asks a `Task` for its splits, instruction, result format, scores, headline
metric and report columns; no other package branches on a task's name. Adding a task is one
module here, one yaml in conf/task/ and one line below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ptpeft_cli.registry import Registry

if TYPE_CHECKING:
    from ptpeft_cli.tasks.base import Task

TASKS: Registry[Task] = Registry("task.name", {
    "captioning": "ptpeft_cli.tasks.captioning:CaptioningTask",
    "vqa": "ptpeft_cli.tasks.vqa:VqaTask",
})


def get_task(task_cfg: Any, instructions: Any = None) -> Task:
    """The task named by `task_cfg.name`, configured; `instructions` is the model's per-task
    override of the instruction text (`model.instructions`)."""
    return TASKS.get(str(task_cfg.name))(task_cfg, instructions)


__all__ = ["TASKS", "get_task"]
