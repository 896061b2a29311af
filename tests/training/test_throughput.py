"""Model FLOPs, tokens, MFU and peak memory (training/throughput.py): the FLOP count of a training
step equals an independent count of its matmuls, excludes gradient checkpointing's recompute and
gives frozen parts no weight gradients; a stage records tokens, warm throughput and memory."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ptpeft_cli.training.hardware import resolve_hardware
from ptpeft_cli.training.loop import StageResult, run_stage
from ptpeft_cli.training.throughput import (
    StageMeter,
    batch_tokens,
    counting_flops,
    throughput_metrics,
)

B, T, H, I, V, L, HEADS = 2, 12, 32, 64, 97, 2, 4  # batch, tokens, hidden, MLP, vocab, layers, heads  # noqa: E741


def llama(attention: str = "eager") -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=L,
                         num_attention_heads=HEADS, num_key_value_heads=HEADS, tie_word_embeddings=False)
    config._attn_implementation = attention
    return LlamaForCausalLM(config).train()


def forward_flops() -> int:
    """The forward's matmuls by hand: per layer q, k, v, o (h x h each), gate and up (h x i),
    down (i x h), scores Q K^T and their product with V (T x T x h per sequence each); then the
    LM head (h x V). A multiply-add is 2 FLOPs."""
    n = B * T
    per_layer = 2 * n * H * H * 4 + 2 * n * H * I * 3 + 2 * 2 * B * T * T * H
    return L * per_layer + 2 * n * H * V


def step_flops(model: torch.nn.Module) -> int:
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))
    with counting_flops(model) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    return counter.get_total_flops()


def test_a_full_training_step_counts_three_forwards() -> None:
    """Every matmul's backward computes the gradient of both its operands (weights train, the
    embeddings make every activation require grad): backward = 2 x forward."""
    assert step_flops(llama()) == 3 * forward_flops()


def test_frozen_parts_get_no_weight_gradient_matmuls() -> None:
    """Only the LM head trains: forward, plus the head's weight gradient; nothing before it needs
    an input gradient."""
    model = llama()
    model.requires_grad_(False)
    model.lm_head.requires_grad_(True)
    assert step_flops(model) == forward_flops() + 2 * B * T * H * V


def test_gradient_checkpointing_recompute_is_not_model_flops() -> None:
    model = llama()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert step_flops(model) == 3 * forward_flops()
    assert model.model.layers[0]._gradient_checkpointing_func.keywords == {"use_reentrant": False}  # restored


def test_cpu_fused_attention_counts_as_the_same_matmuls() -> None:
    assert step_flops(llama("sdpa")) == step_flops(llama("eager")) == 3 * forward_flops()


def test_counting_leaves_the_numbers_alone() -> None:
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))
    plain, counted = llama(), llama()
    plain(input_ids=ids, labels=ids).loss.backward()
    with counting_flops(counted):
        counted(input_ids=ids, labels=ids).loss.backward()
    for a, b in zip(plain.parameters(), counted.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


def test_a_formula_that_fails_gives_no_figure_and_the_step_goes_on() -> None:
    model = llama()
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))
    with counting_flops(model) as counter:
        counter.formulas[torch.ops.aten.mm] = lambda *args, **kwargs: 1 / 0
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    assert counter.get_total_flops() is None and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def test_tokens_are_the_attention_mask() -> None:
    batch = {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.tensor([[1] * 5, [1, 1, 0, 0, 0]])}
    assert batch_tokens(batch) == 7
    assert batch_tokens({"input_ids": torch.ones(2, 5)}) == 10
    assert batch_tokens(None) == 0


def test_warm_window_starts_after_the_warm_up_steps() -> None:
    meter = StageMeter(torch.device("cpu"), warm_after=2)
    for _ in range(4):
        meter.step_done(samples=3, tokens=30)
    assert (meter.samples, meter.tokens, meter.warm_samples, meter.warm_tokens) == (12, 120, 6, 60)


def test_metrics_from_stage_results() -> None:
    results = [StageResult("prefix", 5, 1.0, seconds=10.0, samples=40, tokens=4000, warm_seconds=4.0,
                           warm_samples=32, warm_tokens=3200, flops_per_token=1e9, memory={"peak_gpu_gib": 3.0}),
               StageResult("prefix+lora", 5, 1.0, seconds=6.0, samples=40, tokens=2000, warm_seconds=2.0,
                           warm_samples=32, warm_tokens=1600, flops_per_token=2e9, memory={"peak_gpu_gib": 5.0})]
    metrics = throughput_metrics(results, peak=1.0)
    assert metrics["throughput/tokens_per_s"] == 6000 / 16
    assert metrics["throughput/train_tokens_per_s/prefix"] == 400
    assert metrics["throughput/warm_samples_per_s/prefix+lora"] == 16
    assert metrics["throughput/tflops/prefix"] == pytest.approx(1e9 * 3200 / 4 / 1e12)
    assert metrics["throughput/mfu/prefix+lora"] == pytest.approx(2e9 * 1600 / 2 / 1e12)
    assert metrics["throughput/mfu"] == pytest.approx((1e9 * 3200 + 2e9 * 1600) / 6 / 1e12)
    assert metrics["memory/peak_gpu_gib/prefix+lora"] == 5.0
    assert "throughput/mfu" not in throughput_metrics(results, peak=None)


def test_a_stage_records_tokens_flops_and_memory() -> None:
    model = llama()
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, -4:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    first: list[bool] = []
    result = run_stage(model, itertools.repeat(batch), name="full", lr=1e-3, max_steps=3, grad_accum=1,
                       weight_decay=0.0, warmup_ratio=0.0, scheduler="constant", max_grad_norm=1.0,
                       hardware=resolve_hardware("cpu", "fp32", count_flops=True), log_every=3,
                       log=lambda row: None, progress=False, on_first_step=lambda: first.append(True))
    assert first == [True]
    assert (result.tokens, result.warm_samples, result.warm_tokens) == (3 * 20, 2 * B, 2 * 20)
    assert result.flops_per_token == pytest.approx(3 * forward_flops() / 20)  # padding is computed, so counted
    assert result.warm_seconds > 0 and result.memory["peak_rss_gib"] > 0
    assert "peak_gpu_gib" not in result.memory
