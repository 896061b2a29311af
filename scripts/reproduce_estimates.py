"""The `# plan: ...` comments beside the train commands of docs/reproduce.md, recomputed by
`ptpeft plan` (tests/e2e/test_reproduce_commands.py asserts they are current).

A comment names the card and GPUs per job it was planned for (`# plan: 8 x H100-SXM per job, ...`);
the command's own overrides (experiment, hardware.gpus, batch, method, launcher) are planned as
`ptpeft plan` plans them. A SLURM command's jobs run at once (wall clock: the longest job; its
`hydra.launcher.timeout_min` is set to the planner's), the others one after another.

    python scripts/reproduce_estimates.py            # rewrite the comments in place
    python scripts/reproduce_estimates.py --check    # exit 1 if one is stale
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from functools import cache
from pathlib import Path

from ptpeft_cli.cli import job_overrides, plan_inputs
from ptpeft_cli.planning.plan import Plan, plan
from ptpeft_cli.training.gpus import gpu

DOC = Path(__file__).resolve().parents[1] / "docs" / "reproduce.md"
COMMENT = re.compile(r"# plan: (?P<gpus>\d+) x (?P<card>\S+) per job, .*$")
TIMEOUT = re.compile(r"hydra\.launcher\.timeout_min=\d+")


def train_args(command: str) -> list[str]:
    """The `ptpeft train` arguments of a pasted command (ptpeft, python -m ptpeft_cli or torchrun)."""
    words = shlex.split(command, comments=True)
    return [w for w in words[words.index("train") + 1:] if w not in ("-m", "--multirun")]


def plan_of(command: str, card: str) -> Plan:
    """The plan of a train command on `card`; commands that differ only in Hydra's own settings
    (a SLURM launcher) share one."""
    return _plan(tuple(job_overrides(train_args(command))), card)


@cache
def _plan(overrides: tuple[str, ...], card: str) -> Plan:
    options, jobs, _ = plan_inputs([*overrides, f"hardware.gpu_name={card}"])
    return plan(jobs, bench=options.bench, text_tokens=int(options.text_tokens))


def estimate(command: str, gpus: int, card: str) -> tuple[str, str | None]:
    """(the comment, the SLURM time limit or None) for `command` planned on `gpus` x `card` per job."""
    planned = plan_of(command, card)
    assert all(job.gpus == gpus for job in planned.jobs), f"{command}: the comment says {gpus} GPUs per job"
    assert not planned.misfits, f"{command}: jobs that do not fit {card}: {[j.index for j, _ in planned.misfits]}"
    slurm = "hydra/launcher=slurm" in command
    tail = f"longest job {planned.longest_hours:.1f} h" if slurm else \
        f"{planned.sequential_hours:,.1f} h one job after another"
    timeout = f"hydra.launcher.timeout_min={planned.slurm_timeout_min}" if slurm else None
    return f"# plan: {gpus} x {gpu(card).name} per job, {planned.gpu_hours:,.0f} GPU-h, {tail}", timeout


def planned_commands(text: str) -> list[tuple[int, int, str, str]]:
    """(first line, last line, command, its comment) of every command with a `# plan:` comment."""
    found, pending, start = [], "", 0
    for index, line in enumerate(text.splitlines()):
        start = index if not pending else start
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        match = COMMENT.search(line)
        if match:
            found.append((start, index, pending[:pending.index("# plan:")].strip(), match.group(0)))
        pending = ""
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale comments")
    args = parser.parse_args()
    lines = DOC.read_text().splitlines()
    stale = 0
    for start, end, command, comment in planned_commands(DOC.read_text()):
        match = COMMENT.search(comment)
        fresh, timeout = estimate(command, int(match.group("gpus")), match.group("card"))
        if fresh != comment or (timeout and timeout not in command):
            stale += 1
            print(f"line {end + 1}: {comment}\n   -> {fresh}" + (f" ({timeout})" if timeout else ""))
            lines[end] = lines[end].replace(comment, fresh)
            for index in range(start, end + 1):
                lines[index] = TIMEOUT.sub(timeout, lines[index]) if timeout else lines[index]
    if not args.check:
        DOC.write_text("\n".join(lines) + "\n")
    sys.exit(1 if stale and args.check else 0)


if __name__ == "__main__":
    main()
