"""`make bench-gpu` (scripts/bench_gpu.py) at --tiny size on the CPU: random-weight checkpoints of
the real classes load through ptpeft's families, every row of gpu.json has the contract's fields,
the levers mode and appending work, the docs block is written between its markers; targets are
judged from the figures; the session script's collector and the measured-memory table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from bench_checkpoints import build_tokenizer  # noqa: E402
from bench_gpu_report import BEGIN, END, targets  # noqa: E402
from measured_memory import measured_table  # noqa: E402

from ptpeft_cli.models.real_size import real_config  # noqa: E402

ROW_KEYS = {"family", "checkpoint", "method", "stage", "batch_size", "seq_len", "gradient_checkpointing", "precision",
            "samples_per_s", "tokens_per_s", "tflops", "mfu", "peak_mem_gib", "peak_reserved_gib",
            "time_to_first_step_s", "eval_examples_per_s", "bare_samples_per_s", "ratio_vs_bare", "device", "size"}
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}


def bench(*args: str, tmp: Path) -> None:
    subprocess.run([sys.executable, "scripts/bench_gpu.py", "--tiny", "--out", str(tmp / "out"), "--doc",
                    str(tmp / "benchmarks.md"), "--work", str(tmp), *args], cwd=REPO, env=ENV, check=True,
                   capture_output=True, timeout=1200)


def test_tiny_bench_writes_contract_rows_levers_and_block(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nnotes before\n\n{BEGIN}\nstale\n{END}\n\nnotes after\n")
    bench("--checkpoints", "llava-hf/llava-1.5-7b-hf", "--methods", "none,pt_peft", tmp=tmp_path)
    bench("--checkpoints", "llava-hf/llava-1.5-7b-hf", "--methods", "lora", "--levers", "--lever-list", "defer_sync",
          "--append", tmp=tmp_path)
    report = json.loads((tmp_path / "out" / "gpu.json").read_text())
    assert report["machine"]["gpu"] is None and report["settings"]["tiny"] is True and not report["failures"]
    rows = {(r["method"], r["stage"]): r for r in report["rows"]}
    assert set(rows) == {("none", None), ("pt_lora", "prefix"), ("pt_lora", "prefix+lora")}
    for row in rows.values():
        assert ROW_KEYS <= set(row) and row["device"] == "cpu" and row["size"] == "tiny" and row["mfu"] is None
        assert row["peak_mem_gib"] > 0 and row["eval_examples_per_s"] > 0
    for stage in ("prefix", "prefix+lora"):
        row = rows["pt_lora", stage]
        assert row["samples_per_s"] > 0 and row["bare_samples_per_s"] > 0 and row["tflops"] > 0
        assert row["ratio_vs_bare"] == pytest.approx(row["samples_per_s"] / row["bare_samples_per_s"])
        assert row["tokens_per_s"] == pytest.approx(row["samples_per_s"] * row["seq_len"])
    assert rows["none", None]["samples_per_s"] is None
    [lever] = report["levers"]
    assert lever["lever"] == "defer_sync" and lever["method"] == "lora" and lever["on_samples_per_s"] > 0
    assert "hardware.defer_sync=true" in lever["on"] and "hardware.defer_sync=false" in lever["off"]
    text = doc.read_text()
    assert "notes before" in text and "notes after" in text and "stale" not in text
    assert text.count(BEGIN) == 1 and "**Not measured on a GPU**" in text
    assert "| llava-hf/llava-1.5-7b-hf | pt_lora | prefix+lora |" in text and "| defer_sync |" in text


@pytest.mark.slow
def test_tiny_bench_measures_every_checkpoint_and_method(tmp_path: Path) -> None:
    """What `make bench-gpu ARGS=--tiny` runs: all default checkpoints, all methods."""
    bench(tmp=tmp_path)
    report = json.loads((tmp_path / "out" / "gpu.json").read_text())
    assert not report["failures"]
    measured = {(r["checkpoint"], r["method"]) for r in report["rows"]}
    checkpoints = {"llava-hf/llava-1.5-7b-hf", "Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct",
                   "Salesforce/blip2-opt-2.7b"}
    methods = {"none", "full", "lora", "adapter", "prefix", "pt_lora", "pt_adapter"}
    assert measured == {(c, m) for c in checkpoints for m in methods}


@pytest.mark.parametrize("hub_id", ["llava-hf/llava-1.5-7b-hf", "Qwen/Qwen2-VL-7B-Instruct", "Salesforce/blip2-opt-2.7b"])
def test_stand_in_tokenizer_has_the_real_ids_and_vocabulary_size(hub_id: str) -> None:
    config = real_config(hub_id)
    tokenizer = build_tokenizer(hub_id, config)
    assert len(tokenizer) == config.get_text_config().vocab_size
    info = json.loads((REPO / "ptpeft_cli" / "models" / "real_configs" / (hub_id.replace("/", "--")) / "ptpeft.json")
                      .read_text())
    for token, token_id in info["tokenizer"]["special"].items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id
    image = getattr(config, "image_token_id", None) or config.image_token_index
    text = "<image>" if "llava" in hub_id or "blip2" in hub_id else "<|image_pad|>"
    assert tokenizer(f"a {text} red circle", add_special_tokens=False)["input_ids"][1] == image


def _report(mfu: float, ratio: float, tiny: bool = False) -> dict:
    row = {"checkpoint": "llava-hf/llava-1.5-7b-hf", "size": "real", "stage": None, "mfu": mfu, "tflops": 400.0,
           "ratio_vs_bare": ratio, "peak_mem_gib": 90.0, "peak_reserved_gib": 100.0}
    return {"settings": {"tiny": tiny}, "machine": {"gpu": "NVIDIA H200", "gpu_memory_gib": 139.8},
            "rows": [{**row, "method": "lora"}, {**row, "method": "full", "mfu": mfu - 0.06}], "failures": []}


def test_targets_are_judged_from_the_figures() -> None:
    met = {name: status for name, _, status in targets(_report(mfu=0.47, ratio=0.98))}
    assert met["LoRA >= 45% MFU"] == "met" and met["full fine-tuning (gradient checkpointing) >= 40% MFU"] == "met"
    assert met["lora >= 0.97x the bare loop"] == "met" and met["full fine-tuning of the 7B fits one card"] == "met"
    assert met["PT-LoRA >= 45% MFU"] == "not measured"
    missed = {name: status for name, _, status in targets(_report(mfu=0.44, ratio=0.9))}
    assert missed["LoRA >= 45% MFU"] == missed["full >= 0.97x the bare loop"] == "**not met**"
    tiny = {status for _, _, status in targets(_report(mfu=0.47, ratio=0.98, tiny=True))}
    assert tiny <= {"not measured on a GPU", "not measured"}


def test_measured_memory_sits_next_to_the_estimate_and_skips_what_no_gpu_measured() -> None:
    gpu_row = {"checkpoint": "llava-hf/llava-1.5-7b-hf", "method": "pt_lora", "stage": "prefix", "batch_size": 16,
               "seq_len": 612.0, "gradient_checkpointing": False, "peak_mem_gib": 30.5, "peak_reserved_gib": 33.0,
               "device": "cuda", "size": "real"}
    report = {"machine": {"gpu": "NVIDIA H200"}, "date": "2026-12-05",
              "rows": [gpu_row, {**gpu_row, "device": "cpu", "size": "tiny"}]}
    asked = []
    table = measured_table(report, lambda checkpoint, column: asked.append((checkpoint, column)) or 13.25)
    assert asked == [("llava-hf/llava-1.5-7b-hf", "prefix input")]  # PT-PEFT's stage 1 trains the prefix alone
    assert "| llava-hf/llava-1.5-7b-hf | pt_lora | prefix | 16 | 612 | no | 13.2 | 30.5 | 33.0 | 17.2 |" in table
    assert "1 row(s) of this file were not measured on a GPU" in table


def test_model_sizes_estimate_for_a_measured_cell() -> None:
    from model_sizes import estimate_gib

    weights = estimate_gib("llava-hf/llava-1.5-7b-hf", None)
    assert weights == pytest.approx(13.2, abs=0.1)  # docs/models.md: bf16 weights of LLaVA-1.5-7B
    assert estimate_gib("llava-hf/llava-1.5-7b-hf", "full") == pytest.approx(101.9, abs=0.1)  # fp32 weights


def test_session_collector_puts_a_sweep_in_one_file(tmp_path: Path) -> None:
    from device.collect_runs import collect

    for name, label in (("0_lora_vqa", "lora"), ("1_full_vqa", "full")):
        run = tmp_path / "sweep" / name
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "config.yaml").write_text(
            f"model: {{family: tiny_llava}}\nmethod: {{name: {label}, label: {label}}}\ntask: {{name: vqa}}\n"
            "trainer: {max_steps: 300, batch_size: 32}\nhardware: {device: cuda, precision: bf16}\n")
        if label == "lora":
            (run / "metrics.json").write_text(json.dumps({"eval/vqa_accuracy": 66.9}))
        else:
            (run / "error.txt").write_text("Traceback ...\ntorch.OutOfMemoryError: CUDA out of memory\n")
    runs = {r["method"]: r for r in collect([tmp_path / "sweep"])}
    assert runs["lora"]["metrics"] == {"eval/vqa_accuracy": 66.9} and runs["lora"]["error"] is None
    assert runs["full"]["error"] == "torch.OutOfMemoryError: CUDA out of memory"
    assert runs["lora"]["settings"]["hardware.precision"] == "bf16" and runs["lora"]["task"] == "vqa"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="TINY=1 is the CPU rehearsal of the GPU session")
def test_gpu_session_script_rehearses_on_the_cpu(tmp_path: Path) -> None:
    env = {**ENV, "TINY": "1", "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "PYTHON": sys.executable}
    subprocess.run(["bash", "scripts/device/gpu_session.sh"], cwd=REPO, env=env, check=True, capture_output=True,
                   timeout=3000)
    out = tmp_path / "out"
    log = (out / "session.log").read_text()
    assert "imports ok" in log and log.rstrip().endswith("done") and "exit 124" not in log
    assert all(f"{step}: exit 0" in log for step in ("llava7b", "sweep", "others")), log[-3000:]
    rows = json.loads((out / "gpu.json").read_text())["rows"]
    assert {(r["checkpoint"], r["method"]) for r in rows} >= {("llava-hf/llava-1.5-7b-hf", "full"),
                                                              ("Salesforce/blip2-opt-2.7b", "lora")}
    sweep = json.loads((out / "tiny_sweep.json").read_text())
    assert sorted(r["method"] for r in sweep) == sorted(["none", "full", "lora", "adapter", "prefix", "pt_lora",
                                                         "pt_adapter"])
    assert all(r["error"] is None for r in sweep) and (out / "benchmarks_gpu.md").is_file()


def test_the_planner_reads_the_rows_bench_gpu_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gpu.json written by bench_gpu's own row and save code (its CUDA branch; the runs replaced by
    the metrics `ptpeft train` reports, made by training/throughput.py) plans through `bench=`:
    the rate is the row's, on the card the machine names, and memory is calibrated by its peak."""
    import bench_gpu

    from ptpeft_cli.cli import plan_inputs
    from ptpeft_cli.planning.plan import plan
    from ptpeft_cli.training.loop import StageResult
    from ptpeft_cli.training.throughput import throughput_metrics

    seq = 576 + 64  # LLaVA's image tokens + the planner's default text tokens: the plan's own setting
    result = StageResult("lora", steps=8, final_loss=1.0, seconds=8.0, samples=128, tokens=128 * seq,
                         warm_seconds=7.0, warm_samples=112, warm_tokens=112 * seq, flops_per_token=4.2e10,
                         memory={"peak_gpu_gib": 31.5, "peak_gpu_reserved_gib": 34.0})
    metrics = {**throughput_metrics([result], 989.4), "time/first_step_s": 3.0, "throughput/eval_examples_per_s": 40.0}
    monkeypatch.setattr(bench_gpu, "resolve_hardware", lambda device, precision: type("H", (), {"precision": "bf16"}))
    bench = bench_gpu.GpuBench.__new__(bench_gpu.GpuBench)
    bench.tiny, bench.work, bench.settings = False, tmp_path, bench_gpu.Settings()
    bench.device, bench.cuda, bench.out = torch.device("cuda"), True, tmp_path / "gpu.json"
    bench.report = {"machine": {"gpu": "NVIDIA H200", "peak_bf16_tflops": 989.4, "peak_source": "table"},
                    "settings": {"tiny": False}, "rows": [], "levers": [], "failures": []}
    monkeypatch.setattr(bench, "ptpeft_run", lambda overrides: metrics)
    monkeypatch.setattr(bench, "bare_run", lambda overrides: {"lora": 17.0})
    rows = bench.method_rows("llava-hf/llava-1.5-7b-hf", tmp_path, "lora", 0)
    bench.save("rows", rows, ("checkpoint", "method", "stage", "size"))
    [row] = json.loads(bench.out.read_text())["rows"]
    assert ROW_KEYS <= set(row) and row["device"] == "cuda" and row["samples_per_s"] == 16.0
    assert row["mfu"] == pytest.approx(4.2e10 * seq * 16.0 / 989.4e12)

    def planned(card: str, bench_file: Path) -> object:
        options, jobs, _ = plan_inputs(["model=llava15", "task=vqa", "method=lora", "trainer.max_steps=100",
                                        f"hardware.gpu_name={card}", f"bench={bench_file}"])
        return plan(jobs, bench=options.bench, text_tokens=int(options.text_tokens)).jobs[0].stages[0]

    on_h200 = planned("H200", bench.out)
    assert (on_h200.rate.value, on_h200.rate.source) == (16.0, "measured") and "on H200" in on_h200.rate.note
    assert on_h200.memory.source == "calibrated" and "on H200" in on_h200.memory.note
    on_a100 = planned("A100-80GB", bench.out)
    assert on_a100.rate.source == "scaled" and on_a100.rate.value == pytest.approx(16.0 * 312 / 989.4)
    # --tiny's rows (a toy model on the CPU under the real checkpoint's name) are not read.
    tiny = tmp_path / "tiny.json"
    tiny.write_text(json.dumps({**json.loads(bench.out.read_text()), "machine": {"gpu": None},
                                "rows": [{**row, "device": "cpu", "size": "tiny", "samples_per_s": 900.0}]}))
    assert planned("H200", tiny).rate.value == 16.7 and planned("H200", tiny).memory.source == "estimated"
