"""`ptpeft train model=<family> model.name_or_path=<dir>` end to end on every family's tiny
random checkpoint: the run dir contract holds and a kv prefix that a family refuses is one line,
exit 2. Random weights: the scores are meaningless, the plumbing is what is tested."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_builders import BUILDERS, FAMILY_NAMES

from .conftest import run_cli, run_dir_of

pytestmark = pytest.mark.slow

TINY_RUN = ["trainer.max_steps=2", "task.train_limit=8", "task.eval_limit=4", "logger=none",
            "analysis.enabled=false", "hardware=cpu", "task.meteor=false", "trainer.batch_size=4",
            "trainer.eval_batch_size=4", "task.max_new_tokens=3", "task.dataset.n_train=48",
            "task.dataset.n_val=8", "task.dataset.n_test=24"]


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("family_checkpoints")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def train(family: str, path: Path, extra: list[str], workdir: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture) -> tuple[Path, dict]:
    out, _ = run_cli(["train", f"model={family}", f"model.name_or_path={path}", *TINY_RUN, *extra],
                     workdir, monkeypatch, capsys)
    run_dir = run_dir_of(out)
    run_dir = run_dir if run_dir.is_absolute() else workdir / run_dir
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


# One run for each of the later families (their methods are covered by
# tests/models/test_family_methods.py), chosen so both tasks and both stage-2 kinds run; two for
# the others.
ONE_RUN = {"qwen2_5_vl": ("lora", "captioning"), "paligemma": ("pt_peft", "vqa"),
           "instructblip": ("pt_adapter", "captioning")}
RUNS = [(family, *run) for family in FAMILY_NAMES
        for run in ([ONE_RUN[family]] if family in ONE_RUN else [("pt_peft", "vqa"), ("adapter", "captioning")])]


@pytest.mark.parametrize(("family", "method", "task"), RUNS)
def test_train_runs_on_every_family(family: str, method: str, task: str, checkpoints: dict[str, Path],
                                    workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture) -> None:
    run_dir, metrics = train(family, checkpoints[family], [f"method={method}", f"task={task}"],
                             workdir, monkeypatch, capsys)
    assert 0 < metrics["params/trainable"] < metrics["params/total"]
    assert ("eval/vqa_accuracy" if task == "vqa" else "eval/CIDEr") in metrics
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert len(predictions) == 4 if task == "captioning" else len(predictions) >= 4
    assert any((run_dir / "weights").iterdir())


def test_gradient_checkpointing_and_kv_prefix_from_the_cli(checkpoints: dict[str, Path], workdir: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    _, metrics = train("qwen2_vl", checkpoints["qwen2_vl"],
                       ["method=lora", "task=captioning", "model.gradient_checkpointing=true"],
                       workdir, monkeypatch, capsys)
    assert metrics["params/trainable"] > 0
    _, metrics = train("blip", checkpoints["blip"], ["method=prefix", "method.prefix.mode=kv", "task=vqa"],
                       workdir, monkeypatch, capsys)
    assert metrics["params/trainable"] > 0
    for family, extra in (("git", []), ("paligemma", []), ("llava15", ["model.gradient_checkpointing=true"])):
        with pytest.raises(SystemExit) as exit_info:
            train(family, checkpoints[family], ["method=prefix", "method.prefix.mode=kv", *extra],
                  workdir, monkeypatch, capsys)
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"model family {family}" in error and "mode=kv" in error
