"""Config composition for every group option, and the one-line / exit-2 contract for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ptpeft_cli.cli import CONF_DIR, compose_config, main
from ptpeft_cli.errors import UserError

GROUPS = ["model", "method", "task", "hardware", "logger"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes(group: str, option: str) -> None:
    cfg = compose_config("train", [f"{group}={option}"])
    if group == "method":  # pt_adapter is pt_peft with an adapter as stage 2
        expected = ("pt_peft", "adapter") if option == "pt_adapter" else (option, cfg.method.stage2)
        assert (cfg.method.name, cfg.method.stage2) == expected
    if group == "task":
        assert cfg.task.name == option
    if group == "logger":
        assert cfg.logger.name == option


def test_defaults() -> None:
    cfg = compose_config("train", [])
    assert (cfg.model.family, cfg.task.name, cfg.hardware.device, cfg.logger.name) == (
        "tiny_llava", "captioning", "auto", "wandb")


@pytest.mark.parametrize(
    "override,expected",
    [
        ("method=lorra", "Could not find 'method/lorra'"),
        ("trainer.foo=1", "Key 'foo' not in 'TrainerConfig'"),
        ("trainer.max_steps=abc", "could not be converted to Integer"),
        ("method.lr=-1", "method.lr=-1.0 must be > 0"),
        ("trainer.batch_size=0", "trainer.batch_size=0 must be > 0"),
        ("method.stage2=bitfit", "choose one of: lora, adapter"),
        ("method.prefix.mode=deep", "choose one of: input, kv"),
        ("hardware=tpu", "Available options in 'hardware'"),
    ],
)
def test_bad_input_is_one_line_exit_2(override: str, expected: str, capsys: pytest.CaptureFixture,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", override, "logger=none"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ptpeft: error:") and expected in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "outputs").exists(), "a rejected run must not leave a run dir"


def test_bad_sweep_value_is_caught_before_any_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "-m", "method=full,lorra", "logger=none"])
    assert exit_info.value.code == 2
    assert "method/lorra" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


def test_unknown_command() -> None:
    with pytest.raises(UserError):
        compose_config("train", ["task=translation"])
    result = subprocess.run([sys.executable, "-m", "ptpeft_cli.cli", "fly"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown command 'fly'" in result.stderr and "train" in result.stderr


def test_help_lists_commands_and_groups() -> None:
    out = subprocess.run([sys.executable, "-m", "ptpeft_cli.cli", "--help"], capture_output=True, text=True).stdout
    for command in ("train", "eval", "score", "pretrain"):
        assert command in out
    out = subprocess.run([sys.executable, "-m", "ptpeft_cli.cli", "train", "--help"], capture_output=True,
                         text=True).stdout
    for group in GROUPS:
        assert f"{group}:" in out


@pytest.mark.parametrize("experiment,task", [("paper_captioning", "captioning"), ("paper_vqa", "vqa")])
def test_experiments_compose(experiment: str, task: str) -> None:
    cfg = compose_config("train", [f"experiment={experiment}", "method=lora"])
    assert cfg.task.name == task and cfg.method.name == "lora" and "paper" in cfg.logger.tags


@pytest.mark.parametrize("option,label", [("none", "none"), ("full", "full"), ("lora", "lora"), ("adapter", "adapter"),
                                          ("prefix", "prefix"), ("pt_peft", "pt_lora"), ("pt_adapter", "pt_adapter")])
def test_every_method_has_one_label(option: str, label: str) -> None:
    """The label names the run dir, W&B run, plots and report rows alike; a stage-2 override follows."""
    assert compose_config("train", [f"method={option}"]).method.label == label
    assert compose_config("train", ["method=pt_peft", "method.stage2=adapter"]).method.label == "pt_adapter"


@pytest.mark.parametrize("group,key", [("method", "method.name"), ("task", "task.name"), ("model", "model.family")])
def test_config_options_and_registries_agree(group: str, key: str) -> None:
    """Every yaml names a registered part and every registered part has a yaml (choices derive from
    the registries, so a part is one module + one yaml + one registry line)."""
    from omegaconf import OmegaConf

    from ptpeft_cli.config import choices

    named = {OmegaConf.select(compose_config("train", [f"{group}={option}"]), key) for option in _options(group)}
    assert named == set(choices()[key])


def test_registered_part_without_a_yaml_value_is_refused() -> None:
    with pytest.raises(UserError, match="task.name='ocr' is not allowed; choose one of: captioning, vqa"):
        compose_config("train", ["task.name=ocr"])


@pytest.mark.parametrize("task", ["captioning", "vqa"])
def test_paper_experiments_expand_to_every_method_and_seed(task: str) -> None:
    from ptpeft_cli.cli import sweep_jobs

    jobs = sweep_jobs("train", [f"experiment=paper_{task}"])
    methods = ["none", "full", "lora", "adapter", "prefix", "pt_peft", "pt_adapter"]
    assert sorted(jobs) == sorted([f"experiment=paper_{task}", f"method={m}", f"trainer.seed={s}"]
                                  for m in methods for s in (0, 1, 2))
    quick = sweep_jobs("train", [f"experiment=paper_{task}", "trainer.seed=0"])  # the command line wins
    assert len(quick) == len(methods) and all("trainer.seed=0" in job for job in quick)
