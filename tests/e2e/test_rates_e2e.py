"""`rates=<table>`: a table of per-task, per-method options replaces the method yaml's values, and
the run's saved config records which entry did (config_rules.apply_rates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ptpeft_cli.cli import compose_config
from ptpeft_cli.errors import UserError

from .conftest import SHORT_RUN, SMALL_WORLD, run_cli, run_dir_of

TABLE = """\
name: demo
source: picked by hand for this test
tasks:
  vqa:
    lora: {lr: 0.001}
    pt_lora: {stage1.lr: 0.02, stage2_options.lr: 0.004, prefix.length: 5}
    prefix: {lr: 0.02, prefix.length: notanumber}
    full: {lora.rank: 4}
"""


@pytest.fixture(scope="module")
def search_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A config dir of the user's own, holding rates/demo.yaml (found through hydra.searchpath)."""
    root = tmp_path_factory.mktemp("user_conf")
    (root / "rates").mkdir()
    (root / "rates" / "demo.yaml").write_text(TABLE)
    return f"hydra.searchpath=[file://{root}]"


def test_table_entry_sets_method_options_and_is_recorded(search_path: str) -> None:
    lora = compose_config("train", [search_path, "rates=demo", "task=vqa", "method=lora"])
    assert lora.method.lr == 0.001
    assert lora.method.rates_from == "rates=demo: vqa/lora (picked by hand for this test)"
    pt = compose_config("train", [search_path, "rates=demo", "task=vqa", "method=pt_peft"])
    assert (pt.method.stage1.lr, pt.method.stage2_options.lr, pt.method.prefix.length) == (0.02, 0.004, 5)
    plain = compose_config("train", ["task=vqa", "method=lora"])
    assert plain.method.lr == 0.003 and plain.method.rates_from is None  # rates=none: the yaml's value


@pytest.mark.parametrize("overrides,message", [
    (["method=lora", "method.lr=0.1"], "method.lr is set both on the command line and by rates=demo (vqa/lora)"),
    (["method=adapter"], "rates=demo has no entry for task vqa / method adapter; it has: vqa/lora, vqa/pt_lora"),
    (["method=prefix"], "rates=demo (vqa/prefix): method.prefix.length='notanumber' is invalid"),
    (["method=full"], "rates=demo (vqa/full) sets method.lora.rank, which is not a method option"),
])
def test_table_mistakes_are_one_line_errors(search_path: str, overrides: list[str], message: str) -> None:
    with pytest.raises(UserError) as error:
        compose_config("train", [search_path, "rates=demo", "task=vqa", *overrides])
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_run_trains_with_the_table_and_saves_where_it_came_from(search_path: str, workdir: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture) -> None:
    out, _ = run_cli(["train", search_path, "rates=demo", "task=vqa", "method=lora", "trainer.max_steps=2",
                      "trainer.scheduler=constant",
                      "logger=none", "analysis.enabled=false", "retention.enabled=false", *SMALL_WORLD,
                      *SHORT_RUN], workdir, monkeypatch, capsys)
    run_dir = run_dir_of(out)
    saved = OmegaConf.load((run_dir if run_dir.is_absolute() else workdir / run_dir) / ".hydra" / "config.yaml")
    assert saved.method.lr == 0.001
    assert saved.method.rates_from.startswith("rates=demo: vqa/lora")
    history = (run_dir if run_dir.is_absolute() else workdir / run_dir) / "history.jsonl"
    rows = [json.loads(line) for line in history.read_text().splitlines()]
    assert [row["train/lr"] for row in rows if "train/lr" in row] == [0.001]  # the optimizer got the table's rate


@pytest.mark.parametrize("task", ["captioning", "vqa"])
def test_paper_presets_read_every_method_from_the_tuned_table(task: str) -> None:
    """`make paper` runs each preset's methods and the equal-budget labels with rates=tuned: the
    table must hold all of them (a missing entry would stop the study), and each run records it."""
    preset = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "experiment" / f"paper_{task}.yaml")
    methods = str(preset.hydra.sweeper.params.method).split(",")
    runs = [[f"method={m}"] for m in methods] + [["method=lora", "method.label=lora_600"],
                                                  ["method=adapter", "method.label=adapter_600"]]
    for overrides in runs:
        cfg = compose_config("train", [f"experiment=paper_{task}", *overrides])
        assert cfg.method.rates_from.startswith(f"rates=tuned: {task}/{cfg.method.label}"), overrides
    assert compose_config("train", [f"experiment=paper_{task}", "method=lora", "rates=none"]).method.rates_from is None
