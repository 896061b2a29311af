"""Every command in the ```bash blocks of README.md and docs/*.md runs as pasted.

Each `ptpeft ...` (or `python -m ptpeft_cli ...`) line is run in-process, in order, in one working
directory, with only these changes:
- a few-steps suffix (FEW_STEPS) appended to train / score commands, for every key the command does
  not set itself;
- the documented example paths /data/coco and /data/vqa become a small tree in the official layout
  (tests/official_tree.py), and the placeholders outputs/train/<run> and outputs/sweeps/<time>
  become the latest run / sweep dir the earlier commands printed; `...` is dropped;
- R.json / A.json / Q.json (README's `ptpeft score` lines) are written into the working directory
  before each score command: a result file and the tree's official annotations / questions.
Any other command must be in SKIP, with the reason it is not run here.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from official_tree import OfficialTree, write_official_tree

from ptpeft_cli.cli import main

from .markdown_commands import Command, bash_commands

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# docs/reproduce.md's real-size commands run at smoke size in tests/e2e/test_reproduce_commands.py.
DOCS = [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "reproduce.md")]
# Commands not run here, and why (keep this short: a documented command should work as pasted).
SKIP = {
    "make run": "creates .venv and pip-installs (network); what it runs is `ptpeft train`, run below",
    "make test": "runs this test suite (recursion)",
    "ptpeft pretrain": "~25 min on 2 CPU cores; tests/synthetic/test_pretrain_cli.py runs it with recipe=smoke",
    "ptpeft train -m hydra/launcher=slurm": "submits to a SLURM cluster; tests/test_launchers.py composes it",
    "torchrun": "needs 8 GPUs; tests/training/test_distributed.py runs torchrun with 2 CPU processes",
    "accelerate launch": "needs 8 GPUs; the same launch as torchrun (tests/training/test_distributed.py)",
    "ptpeft train resume=outputs/train/<run>": "needs a stopped run; tests/training/test_resume.py kills and resumes runs",
    "ptpeft train -m resume=outputs/sweeps/<time>": "needs a stopped sweep; tests/e2e/test_sweep_resume.py",
    "python scripts/fetch_data.py": "downloads ~30 GB; tests/scripts/test_fetch_data.py lays out fake archives",
    "ptpeft tune": "~2 h of 300-step sweeps; tests/e2e/test_tune_e2e.py runs it with a 2-step grid into its own table",
    "make tune": "pip-installs first; what it runs is `ptpeft tune`, which tests/e2e/test_tune_e2e.py runs at this size",
    "ptpeft train task=vqa task.dataset.kind=hf task.dataset.hf.path=lmms-lab": "streams from the Hub",
    "ptpeft train task=captioning task.dataset.kind=hf task.dataset.hf.path=parquet task.dataset.hf.data_files.train=/data/mine":
        "needs the user's parquet files; tests/data/test_hub_source.py runs this command's options on its own",
}
FEW_STEPS = {
    "train": ["trainer.max_steps=2", "trainer.batch_size=4", "trainer.eval_batch_size=8", "logger=none",
              "task.meteor=false", "hardware=cpu", "task.train_limit=16", "task.eval_limit=8",
              "analysis.max_rows=64", "retention.limit=8", "task.dataset.n_train=16", "task.dataset.n_val=8",
              "task.dataset.n_test=8"],
    "score": ["meteor=false"],
}


ALL = [command for doc in DOCS for command in bash_commands(doc)]


@dataclass
class Session:
    workdir: Path
    tree: OfficialTree
    runs: list[Path] = field(default_factory=list)
    sweeps: list[Path] = field(default_factory=list)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    workdir = tmp_path_factory.mktemp("docs")
    return Session(workdir, write_official_tree(workdir / "official"))


def _argv(command: str, session: Session) -> list[str]:
    text = command.replace("/data/coco", str(session.tree.coco)).replace("/data/vqa", str(session.tree.vqa))
    if "<run>" in text:
        text = text.replace("outputs/train/<run>", str(session.runs[-1]))
    if "<time>" in text:
        text = text.replace("outputs/sweeps/<time>", str(session.sweeps[-1]))
    words = [word for word in shlex.split(text, comments=True) if word != "..."]
    args = words[3:] if words[:3] == ["python", "-m", "ptpeft_cli"] else words[1:]
    if args and args[0] in FEW_STEPS and "--help" not in args:
        keys = {arg.split("=")[0].lstrip("+") for arg in args}
        args += [extra for extra in FEW_STEPS[args[0]] if extra.split("=")[0] not in keys]
    return args


def _score_inputs(args: list[str], tree: OfficialTree, workdir: Path) -> None:
    """R.json / A.json / Q.json as README's score lines name them: results for the tree's val2014
    files, and the official files themselves."""
    if "predictions=R.json" not in args:
        return
    if "task=vqa" in args:
        (workdir / "A.json").write_text(tree.annotations("val2014").read_text())
        (workdir / "Q.json").write_text(tree.questions("val2014").read_text())
        results = [{"question_id": qid, "answer": "yes"} for qid in tree.question_ids("val2014")]
    else:
        annotations = tree.coco / "annotations" / "captions_val2014.json"
        (workdir / "A.json").write_text(annotations.read_text())
        image_ids = sorted({a["image_id"] for a in json.loads(annotations.read_text())["annotations"]})
        results = [{"image_id": image_id, "caption": "a red circle next to a blue square"} for image_id in image_ids]
    (workdir / "R.json").write_text(json.dumps(results))


def _not_run(command: Command) -> bool:
    return command.text.startswith(tuple(SKIP))


RUN = [c for c in ALL if not _not_run(c)]


def test_the_docs_hold_commands_and_the_skip_list_is_current() -> None:
    assert {c.doc for c in ALL} >= {"README.md", "data.md", "models.md"}
    assert any("task.dataset.root=/data/vqa" in c.text for c in ALL)
    stale = [prefix for prefix in SKIP if not any(c.text.startswith(prefix) for c in ALL)]
    assert not stale, f"SKIP lists commands no doc shows any more: {stale}"


@pytest.mark.parametrize("command", RUN, ids=[f"{c.doc}:{c.line}" for c in RUN])
def test_documented_command_runs_as_pasted(command: Command, session: Session, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    assert command.text.startswith(("ptpeft ", "python -m ptpeft_cli ")), (
        f"{command.doc}:{command.line}: not a ptpeft command; run it here or add it to SKIP with a reason")
    args = _argv(command.text, session)
    monkeypatch.chdir(session.workdir)
    monkeypatch.setenv("PTPEFT_DATA", str(session.workdir / "data"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    _score_inputs(args, session.tree, session.workdir)
    try:
        main(args)
    except SystemExit as exit_info:
        captured = capsys.readouterr()
        assert exit_info.code in (0, None), f"{command.text}\n-> exit {exit_info.code}: {captured.err[-2000:]}"
    out = capsys.readouterr().out
    runs = [session.workdir / m for m in re.findall(r"^run dir: (.+)$", out, flags=re.MULTILINE)]
    sweeps = [session.workdir / m for m in re.findall(r"^sweep dir: (.+)$", out, flags=re.MULTILINE)]
    for run in runs:
        assert (run / "metrics.json").is_file(), f"{command.text}: {run} has no metrics"
    for sweep in sweeps:  # a failed job also made the sweep exit 1 above; error.txt names it
        assert not list(sweep.rglob("error.txt")), f"{command.text}: failed jobs in {sweep}"
    session.runs += runs
    session.sweeps += sweeps
