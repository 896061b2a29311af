"""docs/reproduce.md, tested: the real-size presets compose, every `ptpeft plan` line runs as
pasted, every train command's `# plan:` estimate (and SLURM time limit) is what the planner says
now, and each command form runs at smoke size as pasted with overrides appended: a tiny random
checkpoint of the family's real class, the tiny official-format COCO / VQAv2 tree as
$PTPEFT_DATA, CPU, two steps, one method. SLURM cannot run here: its commands are composed."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hydra import compose, initialize_config_dir
from official_tree import OfficialTree, write_official_tree
from omegaconf import OmegaConf
from tiny_builders import BUILDERS

from ptpeft_cli.cli import CONF_DIR, compose_config, job_overrides, main, sweep_jobs
from ptpeft_cli.config import register_configs

from .markdown_commands import Command, bash_commands

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reproduce.md"
COMMANDS = bash_commands(DOC)
PRESETS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("real_*_*.yaml"))
# What makes a pasted command smoke-sized: each key replaces the command's own value or is appended.
SMOKE = {"hardware": "cpu", "trainer.max_steps": "2", "trainer.batch_size": "4", "trainer.grad_accum": "1",
         "trainer.eval_batch_size": "4", "trainer.checkpoint_every": "0", "trainer.seed": "0",
         "task.max_new_tokens": "3", "task.meteor": "false", "logger": "none", "analysis.enabled": "false",
         "retention.limit": "2", "hardware.num_threads": "1"}


@pytest.fixture(scope="module")
def estimates() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reproduce_estimates", REPO / "scripts" / "reproduce_estimates.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> OfficialTree:
    return write_official_tree(tmp_path_factory.mktemp("reproduce"))


def _experiment(command: Command) -> str:
    return re.search(r"experiment=(\S+)", command.text).group(1)


def _first(form: str, experiment: str) -> Command:
    return next(c for c in COMMANDS if c.text.startswith(form) and _experiment(c) == experiment)


def _smoke(args: list[str], extra: dict[str, str]) -> list[str]:
    """`args` with the smoke values replacing the command's own and the rest appended."""
    values = {**SMOKE, **extra}
    out = [f"{a.split('=', 1)[0]}={values[a.split('=', 1)[0]]}" if a.split("=", 1)[0] in values else a for a in args]
    given = {a.split("=", 1)[0] for a in args}
    return out + [f"{key}={value}" for key, value in values.items() if key not in given]


def test_the_doc_shows_every_preset_in_every_form() -> None:
    families = ("blip2_opt", "instructblip", "llava15", "qwen2_5_vl", "qwen2_vl")
    assert PRESETS == [f"real_{f}_{t}" for f in families for t in ("captioning", "vqa")]
    for preset in PRESETS:
        forms = {c.text.split()[0] for c in COMMANDS if "experiment=" in c.text and _experiment(c) == preset}
        assert forms >= {"ptpeft", "torchrun"}, preset
        assert any("hydra/launcher=slurm" in c.text and _experiment(c) == preset for c in COMMANDS), preset
    assert COMMANDS[0].text == "export PTPEFT_DATA=/data"


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_composes_its_matrix_with_its_rates(preset: str) -> None:
    family, task = re.fullmatch(r"real_(.+)_(captioning|vqa)", preset).groups()
    table = OmegaConf.load(REPO / "conf" / "rates" / f"real_{family}.yaml").tasks[task]
    jobs = sweep_jobs("train", [f"experiment={preset}"])
    assert len(jobs) == 21
    for job in jobs[::3]:  # one seed of each method: the others differ in trainer.seed alone
        cfg = compose_config("train", job)
        assert (cfg.model.family, cfg.task.name, cfg.model.dtype, cfg.hardware.device) == (family, task, "fp32", "cuda")
        assert cfg.trainer.max_steps == {"captioning": 4400, "vqa": 3467}[task]
        assert cfg.trainer.batch_size * cfg.trainer.grad_accum == 128
        assert cfg.task.dataset.kind == {"captioning": "coco_karpathy", "vqa": "vqav2"}[task]
        assert cfg.method.rates_from.startswith(f"rates=real_{family}: {task}/{cfg.method.label} (")
        for key, value in (table[cfg.method.label] or {}).items():
            assert OmegaConf.select(cfg.method, key) == value, (job, key)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.text.startswith("ptpeft plan")],
                         ids=lambda c: f"line{c.line}")
def test_plan_lines_run_as_pasted(command: Command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    main(shlex.split(command.text)[1:])
    out = capsys.readouterr().out
    assert out.startswith("ptpeft plan: ") and "\ntotal: " in out
    assert list(tmp_path.iterdir()) == []


def test_every_estimate_beside_a_command_is_the_planners(estimates: ModuleType) -> None:
    planned = estimates.planned_commands(DOC.read_text())
    trains = [c for c in COMMANDS if " train " in f" {c.text} "]
    assert len(planned) == len(trains) == 46
    for _, _, command, comment in planned:
        match = estimates.COMMENT.search(comment)
        fresh, timeout = estimates.estimate(command, int(match.group("gpus")), match.group("card"))
        assert comment == fresh, f"{command}: the doc says {comment!r}; run python scripts/reproduce_estimates.py"
        assert timeout is None or timeout in command, f"{command}: {timeout}"


# (preset, the retention probe's metric, the table's PT-LoRA stage-2 rate): both tasks, three families' real classes.
ONE_GPU_SMOKE = [("real_llava15_captioning", "retention/vqav2/vqa_accuracy", 2e-4),
                 ("real_instructblip_vqa", "retention/coco_captions/CIDEr", 2e-4),
                 ("real_qwen2_5_vl_captioning", "retention/vqav2/vqa_accuracy", 1e-4)]


@pytest.mark.parametrize(("preset", "retained", "stage2_lr"), ONE_GPU_SMOKE, ids=[p[0] for p in ONE_GPU_SMOKE])
def test_the_one_gpu_command_runs_at_smoke_size(preset: str, retained: str, stage2_lr: float, tree: OfficialTree,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    family, task = re.fullmatch(r"real_(.+)_(captioning|vqa)", preset).groups()
    command = _first("ptpeft train -m", preset)
    tiny = BUILDERS[family](tmp_path / f"tiny_{family}")
    args = _smoke(shlex.split(command.text)[1:], {"model.name_or_path": str(tiny), "method": "pt_peft"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PTPEFT_DATA", str(tree.root))  # the doc's `export PTPEFT_DATA=/data`
    monkeypatch.setenv("WANDB_MODE", "offline")
    main(args)
    sweep = tmp_path / re.search(r"^sweep dir: (.+)$", capsys.readouterr().out, re.MULTILINE).group(1)
    (job,) = [d for d in sweep.iterdir() if d.is_dir()]
    metrics = json.loads((job / "metrics.json").read_text())
    assert job.name == f"0_pt_lora_{task}"
    assert {"captioning": "eval/CIDEr", "vqa": "eval/vqa_accuracy"}[task] in metrics
    assert retained in metrics  # the other task, read from $PTPEFT_DATA
    saved = OmegaConf.load(job / ".hydra" / "config.yaml")
    assert (saved.method.stage1.lr, saved.method.stage2_options.lr) == (1e-3, stage2_lr)
    assert saved.model.family == family and saved.model.dtype == "fp32"
    data = {"captioning": "coco", "vqa": "vqa"}[task]
    assert saved.task.dataset.root == f"{tree.root}/{data}"


def test_the_torchrun_command_runs_on_two_processes_at_smoke_size(tree: OfficialTree, tmp_path: Path) -> None:
    command = _first("torchrun", "real_qwen2_vl_vqa")
    words = shlex.split(command.text)
    assert words[:2] == ["torchrun", "--nproc_per_node=8"] and "method=full" not in words
    tiny = BUILDERS["qwen2_vl"](tmp_path / "tiny_qwen2_vl")
    args = _smoke(words[2:], {"model.name_or_path": str(tiny), "method": "lora", "hardware.gpus": "2"})
    env = {**os.environ, "PTPEFT_DATA": str(tree.root), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("PTPEFT_RUN_ID", None)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    (job,) = [d for d in sweep.iterdir() if d.is_dir()]
    assert "eval/vqa_accuracy" in json.loads((job / "metrics.json").read_text())
    assert "2 ranks in sync" in run.stdout, run.stdout[-3000:]
    assert run.stdout.count("sweep dir: ") == 1  # rank 0 alone summarises the sweep


@pytest.mark.parametrize("command", [c for c in COMMANDS if "hydra/launcher=slurm" in c.text],
                         ids=lambda c: f"line{c.line}")
def test_slurm_commands_compose_their_launcher_and_jobs(command: Command) -> None:
    """Not submitted (no cluster here): Hydra's launcher config as submitit would get it, and the jobs."""
    args = [a for a in shlex.split(command.text)[2:] if a != "-m"]
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", [a for a in args if a.startswith("hydra")] + [f"experiment={_experiment(command)}"],
                      return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["partition"] == "gpu"
    assert launcher["gpus_per_node"] == launcher["tasks_per_node"] == 8  # one process per GPU
    assert f"hydra.launcher.timeout_min={launcher['timeout_min']}" in command.text
    jobs = sweep_jobs("train", job_overrides(args))
    methods = next((a.split("=", 1)[1].split(",") for a in args if a.startswith("method=")), [None] * 7)
    assert len(jobs) == 3 * len(methods) and all("hardware.gpus=8" in job for job in jobs)
