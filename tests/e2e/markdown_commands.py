"""The command lines of a markdown file's ```bash blocks, as the docs-commands tests read them."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Command:
    doc: str
    line: int
    text: str


def bash_commands(path: Path) -> list[Command]:
    """The command lines of a markdown file's ```bash blocks (continuations joined, comments dropped)."""
    commands, in_block, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip().startswith("```"):
            in_block = line.strip() == "```bash" if not in_block else False
            continue
        if not in_block:
            continue
        if not pending:
            start = number
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        text = " ".join(shlex.split(pending, comments=True))
        if text:
            commands.append(Command(path.name, start, pending.split(" #")[0].strip()))
        pending = ""
    return commands
