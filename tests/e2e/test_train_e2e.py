"""`ptpeft train` end to end: every file of the run-dir contract, metrics better than zero-shot,
`ptpeft eval` reproduces them, W&B offline files exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from ptpeft_cli.models import get_family
from ptpeft_cli.tasks import get_task
from ptpeft_cli.training.batches import evaluate_on_task
from ptpeft_cli.training.hardware import resolve_hardware

from .conftest import SHORT_RUN, SMALL_WORLD, run_cli, run_dir_of

pytestmark = pytest.mark.slow


def zero_shot_metrics(run_dir: Path) -> dict[str, float]:
    """The shipped model's metrics on the same eval split, before any training."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    loaded = get_family(cfg.model.family).load(cfg.model)
    cfg.task.meteor = False
    task = get_task(cfg.task, cfg.model.instructions)
    return evaluate_on_task(loaded, task, task.load(), cfg, resolve_hardware("cpu", "fp32"))[1]


@pytest.mark.parametrize("task,metric,steps", [("captioning", "eval/CIDEr", 60), ("vqa", "eval/vqa_accuracy", 60)])
def test_full_finetune_writes_contract_and_improves(task: str, metric: str, steps: int, workdir: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    out, _ = run_cli(["train", "method=full", f"task={task}", f"trainer.max_steps={steps}", "logger=wandb",
                      *SMALL_WORLD, *SHORT_RUN], workdir, monkeypatch, capsys)
    run_dir = run_dir_of(out)
    run_dir = run_dir if run_dir.is_absolute() else workdir / run_dir
    for name in (".hydra/config.yaml", "metrics.json", "predictions.json", "history.jsonl",
                 "representation.json", "features.safetensors", "spectrum.png"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "weights").iterdir())
    assert list((run_dir / "wandb").glob("offline-run-*")), "W&B must log offline into the run dir"

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in (metric, "params/trainable", "params/total", "rep/effective_rank", "rep/effective_rank_base",
                "rep/effective_rank_ratio", "rep/rank90", "rep/rank99", "time/train_s", "time/first_step_s",
                "throughput/tokens_per_s", "throughput/train_tokens_per_s/full", "throughput/warm_samples_per_s/full",
                "memory/peak_rss_gib", "memory/peak_rss_gib/full"):
        assert key in metrics, key
    assert not {"throughput/mfu", "memory/peak_gpu_gib"} & set(metrics), "GPU figures on a CPU run"
    assert 0 < metrics["params/trainable"] < metrics["params/total"]
    assert 0 < metrics["time/first_step_s"] < metrics["time/total_s"]

    predictions = json.loads((run_dir / "predictions.json").read_text())
    id_key, text_key = ("image_id", "caption") if task == "captioning" else ("question_id", "answer")
    assert predictions and set(predictions[0]) == {id_key, text_key}

    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    losses = [row["train/loss"] for row in history if "train/loss" in row]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    assert all(row["throughput/tokens_per_s"] > 0 for row in history if "train/loss" in row)  # W&B gets these rows

    resolved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert "${" not in OmegaConf.to_yaml(resolved), "the saved config must be resolved"
    Image.open(run_dir / "spectrum.png").verify()

    # Downstream captions differ in style from pre-training, and the downstream questions are kinds
    # pre-training never asked: tuning must help on both.
    assert metrics[metric] > zero_shot_metrics(run_dir)[metric]

    out, _ = run_cli(["eval", f"run_dir={run_dir}"], workdir, monkeypatch, capsys)
    recomputed = json.loads(out.strip().splitlines()[-1])
    assert recomputed["identical"] is True
    assert recomputed[metric] == metrics[metric]


def test_pt_peft_run_reloads_with_identical_metrics(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    out, _ = run_cli(["train", "method=pt_peft", "task=vqa", "trainer.max_steps=20", "logger=none",
                      *SMALL_WORLD, *SHORT_RUN], workdir, monkeypatch, capsys)
    run_dir = run_dir_of(out)
    run_dir = run_dir if run_dir.is_absolute() else workdir / run_dir
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert {"prefix", "prefix+lora"} <= {row.get("stage") for row in history}
    assert (run_dir / "weights" / "lora" / "adapter_config.json").is_file()
    out, _ = run_cli(["eval", f"run_dir={run_dir}"], workdir, monkeypatch, capsys)
    assert json.loads(out.strip().splitlines()[-1])["identical"] is True

    # Same stage-1 config -> the cached prefix is reused by PT-Adapter; a longer prefix misses it.
    out, _ = run_cli(["train", "method=pt_adapter", "task=vqa", "trainer.max_steps=20", "logger=none",
                      *SMALL_WORLD, *SHORT_RUN], workdir, monkeypatch, capsys)
    assert "reusing cached stage" in out
    out, _ = run_cli(["train", "method=pt_adapter", "method.prefix.length=12", "task=vqa",
                      "trainer.max_steps=20", "logger=none", *SMALL_WORLD, *SHORT_RUN], workdir, monkeypatch, capsys)
    assert "reusing cached stage" not in out


def test_method_none_is_the_zero_shot_row_with_retention_on_the_eval_split(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    out, _ = run_cli(["train", "method=none", "task=vqa", "logger=none", "retention.limit=20",
                      *SMALL_WORLD, *SHORT_RUN], workdir, monkeypatch, capsys)
    run_dir = run_dir_of(out)
    run_dir = run_dir if run_dir.is_absolute() else workdir / run_dir
    assert "_none_vqa" in run_dir.name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["params/trainable"] == 0 and metrics["time/train_s"] == 0
    assert metrics["rep/effective_rank_ratio"] == 1.0  # nothing trained: the same features twice
    assert not any("train/loss" in json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines())
    # Retention: the other task, and the pre-training question kinds, on the run's eval split.
    assert {"retention/captioning/CIDEr", "retention/captioning/object_precision",
            "retention/vqa_pretrain_kinds/vqa_accuracy"} <= set(metrics)
    from ptpeft_cli.training.retention import probe_task_config

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    probe = probe_task_config(cfg.task, {"task": "vqa", "dataset": {"question_set": "pretrain_kinds"}}, 20)
    assert (probe.eval_split, probe.eval_limit, probe.dataset.question_set) == (cfg.task.eval_split, 20, "pretrain_kinds")
    loaded = get_family(cfg.model.family).load(cfg.model)
    task = get_task(probe)
    expected = evaluate_on_task(loaded, task, task.load(), OmegaConf.merge(cfg, {"task": probe}),
                                resolve_hardware("cpu", "fp32"))[1]
    assert metrics["retention/vqa_pretrain_kinds/vqa_accuracy"] == expected["eval/vqa_accuracy"]


def test_secrets_in_the_environment_never_reach_the_run_dir(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    """W&B keys and hub tokens live in the environment only: not in saved configs, logs or W&B files."""
    secrets = {"WANDB_API_KEY": "0123456789abcdef-ptpeft-test-key", "HF_TOKEN": "hf_ptpeftTestTokenDoNotLeak"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    out, _ = run_cli(["train", "method=lora", "task=vqa", "trainer.max_steps=2", "logger=wandb", "logger.mode=offline",
                      "analysis.enabled=false", "retention.enabled=false", *SMALL_WORLD, *SHORT_RUN],
                     workdir, monkeypatch, capsys)
    run_dir = run_dir_of(out)
    run_dir = run_dir if run_dir.is_absolute() else workdir / run_dir
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any("wandb" in p.parts for p in files)
    for path in files:
        data = path.read_bytes()
        for value in secrets.values():
            assert value.encode() not in data, f"{value[:6]}... leaked into {path}"
