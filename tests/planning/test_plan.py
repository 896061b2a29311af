"""`ptpeft plan`: every job of a sweep, its memory per GPU against the card and its time from
measured throughput (used as measured, scaled by peak, or extrapolated by FLOPs), from shapes on
the meta device; nothing loaded, nothing written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tiny_builders import save_llava15

from ptpeft_cli.cli import compose_config, main, plan_inputs, sweep_jobs
from ptpeft_cli.errors import UserError
from ptpeft_cli.planning import estimate as est
from ptpeft_cli.planning.measured import SHIPPED
from ptpeft_cli.planning.plan import Plan, plan

LLAVA = ["model=llava15", "task=vqa", "trainer.max_steps=100", "task.eval_limit=50", "analysis.enabled=false",
         "retention.enabled=false"]


def planned(args: list[str], bench: str | None = None) -> Plan:
    options, jobs, _ = plan_inputs(args + ([f"bench={bench}"] if bench else []))
    return plan(jobs, bench=options.bench, text_tokens=int(options.text_tokens))


@pytest.fixture(scope="module")
def study() -> Plan:
    return planned(["experiment=real_llava15_captioning", "hardware.gpu_name=H100"])


def test_the_shipped_table_holds_the_four_h200_figures_in_bench_gpu_format() -> None:
    doc = json.loads(SHIPPED.read_text())
    fields = {"family", "checkpoint", "method", "stage", "batch_size", "seq_len", "gradient_checkpointing",
              "precision", "samples_per_s", "tokens_per_s", "tflops", "mfu", "peak_mem_gib", "peak_reserved_gib",
              "time_to_first_step_s", "eval_examples_per_s", "bare_samples_per_s", "ratio_vs_bare", "device", "size"}
    assert all(set(row) == fields for row in doc["rows"])
    assert [(r["method"], r["stage"], r["gradient_checkpointing"], r["samples_per_s"]) for r in doc["rows"]] == [
        ("lora", None, False, 16.7), ("pt_lora", "prefix", False, 18.3), ("pt_lora", "prefix+lora", False, 19.2),
        ("full", None, True, 12.9)]
    assert all(r["peak_mem_gib"] is None and r["tokens_per_s"] is None for r in doc["rows"])  # not measured
    assert "2026-12-04" in doc["source"] and "H200" in doc["source"]


def test_a_preset_plans_its_whole_matrix(study: Plan) -> None:
    assert [(j.label, j.seed) for j in study.jobs] == [
        (label, seed) for label in ("none", "full", "lora", "adapter", "prefix", "pt_lora", "pt_adapter")
        for seed in (0, 1, 2)]
    pt_lora = {j.seed: j.index for j in study.jobs if j.label == "pt_lora"}
    for job in (j for j in study.jobs if j.label == "pt_adapter"):
        prefix, adapter = job.stages
        assert (prefix.name, prefix.cached_from, prefix.seconds) == ("prefix", pt_lora[job.seed], 0.0)
        assert adapter.name == "prefix+adapter" and adapter.cached_from is None and adapter.seconds > 0
    assert all(s.samples == 4400 * 128 for j in study.jobs for s in j.stages)
    assert not study.jobs[0].stages and study.jobs[0].eval_examples == 5000  # Karpathy test
    assert (study.jobs[0].micro, study.jobs[0].grad_accum, study.jobs[0].gpus) == (16, 8, 1)
    assert study.gpu_hours == pytest.approx(sum(j.gpu_hours for j in study.jobs))
    assert study.sequential_hours == pytest.approx(study.gpu_hours)  # one GPU per job
    assert study.slurm_timeout_min >= study.longest_hours * 60 * 1.2


def test_full_fine_tuning_needs_more_than_one_80gb_card_and_the_fix_fits(study: Plan) -> None:
    misfits = {(j.label, s.name) for j, s in study.misfits}
    assert misfits == {("full", "full")}
    job, stage = study.misfits[0]
    # fp32 weights, gradients and two AdamW moments (16 bytes) of the 6.76 B trained parameters alone:
    assert stage.memory.value > 16 * stage.footprint.trainable / 2**30 > 100
    assert stage.fix.startswith("2 GPUs with hardware.distributed=fsdp trainer.checkpoint_every=0")
    fixed = planned(["experiment=real_llava15_captioning", "hardware.gpu_name=H100", "method=full",
                     "hardware.gpus=2", "hardware.distributed=fsdp", "trainer.checkpoint_every=0",
                     "trainer.batch_size=32", "trainer.grad_accum=4"])
    assert not fixed.misfits and len(fixed.jobs) == 3
    assert fixed.jobs[0].stages[0].memory.value < stage.memory.value / 1.5
    on_h200 = planned(["experiment=real_llava15_captioning", "hardware.gpu_name=H200", "method=full", "trainer.seed=0"])
    assert not on_h200.misfits


def test_memory_grows_with_the_batch_and_checkpointing_or_sharding_cut_it(study: Plan) -> None:
    lora = next(j for j in study.jobs if j.label == "lora").stages[0]
    stage = est.Stage(study.shapes, lora.footprint, "lora", None, study.seq, 16, False, 1, False)
    static = lora.footprint.static_bytes
    double = est.memory_bytes(dataclasses.replace(stage, micro=32)) - static
    assert double == pytest.approx(2 * (est.memory_bytes(stage) - static))
    assert est.memory_bytes(dataclasses.replace(stage, checkpointing=True)) < est.memory_bytes(stage) / 2
    full = next(j for j in study.jobs if j.label == "full").stages[0]
    one = est.Stage(study.shapes, full.footprint, "full", None, study.seq, 8, True, 1, False)
    sharded = dataclasses.replace(one, gpus=4, fsdp=True)
    assert est.memory_bytes(sharded) < est.memory_bytes(one) - 0.7 * full.footprint.static_bytes
    assert est.memory_bytes(dataclasses.replace(one, gpus=4)) > est.memory_bytes(one)  # DDP's buckets


def test_a_measured_rate_is_used_as_it_is_and_scaled_by_peak_on_another_card() -> None:
    on_h200 = planned([*LLAVA, "method=lora", "hardware.gpu_name=H200"]).jobs[0]
    rate = on_h200.stages[0].rate
    assert (rate.value, rate.source) == (16.7, "measured")
    assert on_h200.stages[0].seconds == pytest.approx(100 * 32 / 16.7)  # steps x batch 32
    on_a100 = planned([*LLAVA, "method=lora", "hardware.gpu_name=A100-80GB"]).jobs[0].stages[0].rate
    assert on_a100.source == "scaled" and on_a100.value == pytest.approx(16.7 * 312 / 989.4)


def test_an_unmeasured_setting_is_extrapolated_by_flops_and_marked() -> None:
    lora = planned([*LLAVA, "method=lora", "hardware.gpu_name=H200"]).jobs[0].stages[0]
    checkpointed = planned([*LLAVA, "method=lora", "hardware.gpu_name=H200",
                            "model.gradient_checkpointing=true"]).jobs[0].stages[0]
    assert checkpointed.rate.source == "extrapolated" and "lora (batch 16) on H200" in checkpointed.rate.note
    shapes, fp, seq = planned([*LLAVA, "method=lora"]).shapes, lora.footprint, 576 + 64
    assert checkpointed.rate.value == pytest.approx(
        16.7 * est.train_flops(shapes, fp, seq, False) / est.train_flops(shapes, fp, seq, True))
    adapter = planned([*LLAVA, "method=adapter", "hardware.gpu_name=H200"]).jobs[0].stages[0].rate
    assert adapter.source == "extrapolated" and "lora" in adapter.note  # frozen base: LoRA's row


def test_a_fresh_bench_table_wins_over_the_shipped_rows(tmp_path: Path) -> None:
    doc = json.loads(SHIPPED.read_text())
    doc["rows"] = [{**doc["rows"][0], "samples_per_s": 30.0, "peak_mem_gib": 20.0}]
    bench = tmp_path / "gpu.json"
    bench.write_text(json.dumps(doc))
    stage = planned([*LLAVA, "method=lora", "hardware.gpu_name=H200"], str(bench)).jobs[0].stages[0]
    assert (stage.rate.value, stage.rate.source) == (30.0, "measured")
    assert stage.memory.source == "calibrated"  # measured 20 GiB at batch 16; planned at 32
    assert 20.0 < stage.memory.value < 40.0
    bench.write_text("{not json")
    with pytest.raises(UserError, match="is not a `make bench-gpu` table"):
        planned([*LLAVA, "method=lora"], str(bench))


def test_a_local_checkpoint_is_planned_from_its_own_config(tmp_path: Path) -> None:
    tiny = save_llava15(tmp_path / "tiny")
    local = planned(["model=llava15", f"model.name_or_path={tiny}", "method=pt_peft", "trainer.max_steps=10"])
    assert local.shapes.checkpoint == str(tiny) and local.shapes.total_params < 10**6
    assert [s.name for s in local.jobs[0].stages] == ["prefix", "prefix+lora"]
    assert all(s.fits for s in local.jobs[0].stages)


def test_jobs_differing_in_seed_only_are_copies_of_one_composition() -> None:
    _, jobs, _ = plan_inputs(["experiment=real_qwen2_vl_vqa", "method=pt_adapter,full"])
    assert [job for job, _ in jobs] == sweep_jobs("train", ["experiment=real_qwen2_vl_vqa", "method=pt_adapter,full"])
    for job, config in jobs:
        assert OmegaConf.to_container(config) == OmegaConf.to_container(compose_config("train", job))


def test_the_command_prints_a_plan_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    main(["plan", "experiment=real_blip2_opt_vqa", "hardware.gpu_name=A100-40GB", "method=full,lora", "-m"])
    out = capsys.readouterr().out
    assert "6 jobs; Salesforce/blip2-opt-2.7b (blip2_opt, 3.74 B parameters)" in out
    assert "1 x A100-40GB per job (40 GiB, 312 TFLOP/s bf16 dense)" in out
    methods = [line.split("|")[2].strip() for line in out.splitlines() if line.startswith("| ") and "job" not in line]
    assert methods == ["full"] * 3 + ["lora"] * 3 and "total: " in out
    assert list(tmp_path.iterdir()) == []
    main(["plan", "--help"])
    assert "bench: null" in capsys.readouterr().out
