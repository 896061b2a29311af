"""scripts/paper.sh (`make paper`) at smoke size, one task: the preset sweep with the rates table,
the equal-budget rows (twice the steps, their own labels, their rates from the table), the report
block with the claim verdicts, and the figures copied where docs/results.md shows them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

from ptpeft_cli import rundir

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("e2e_settings", REPO / "tests" / "e2e" / "conftest.py")
assert _spec and _spec.loader
E2E = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(E2E)  # the e2e tests' small world and short runs


@pytest.mark.slow
def test_paper_script_runs_the_study_with_equal_budget_rows(tmp_path: Path) -> None:
    doc = tmp_path / "results.md"
    doc.write_text("untuned\n<!-- report:begin paper-full -->\nkept\n<!-- report:end paper-full -->\n"
                   "<!-- report:begin paper-tuned -->\nstale\n<!-- report:end paper-tuned -->\n")
    root, figures = tmp_path / "paper", tmp_path / "figures"
    env = {**os.environ, "PTPEFT": str(REPO / ".venv" / "bin" / "ptpeft"), "PTPEFT_DATA": str(tmp_path / "data"),
           "PAPER_TASKS": "vqa", "PAPER_STEPS": "2", "PAPER_ROOT": str(root), "PAPER_DOC": str(doc),
           "PAPER_FIGURES": str(figures), "PAPER_ARGS": " ".join(["trainer.seed=0", "retention.limit=8", *E2E.SMALL_WORLD,
                                                                 *E2E.SHORT_RUN]),
           "WANDB_MODE": "offline"}
    done = subprocess.run(["bash", "scripts/paper.sh", "full"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=3000)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "paper-full: vqa done after" in done.stdout
    text = doc.read_text()
    assert "\nkept\n" in text and "stale" not in text  # the untuned block stays as it was
    for label in ("pt_lora", "lora_600", "adapter_600"):
        assert f"| tiny_llava | {label} | 1 |" in text, label
    assert "#### vqa: the paper's claims by the 2-std rule" in text and "| (b) | pt_lora vs lora_600 |" in text
    for name in ("tuned-vqa.png", "tuned-vqa-spectra.png", "tuned-retention-rank.png"):
        assert (figures / name).read_bytes()[:4] == b"\x89PNG", name
    equal = {run.label: run for run in rundir.find_runs([root / "vqa-600"])}
    assert set(equal) == {"lora_600", "adapter_600"}
    lora = equal["lora_600"].config
    assert lora.trainer.max_steps == 4 and lora.method.rates_from.startswith("rates=tuned: vqa/lora_600")
    assert (root / "vqa-600").joinpath(equal["lora_600"].path.name).name.endswith("_lora_600_vqa")
    main = {run.label: run.config for run in rundir.find_runs([root / "vqa"])}
    assert main["pt_lora"].trainer.max_steps == 2 and main["lora"].method.lr == lora.method.lr
