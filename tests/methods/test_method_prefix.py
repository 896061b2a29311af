"""Prefix tuning: generation sees the prefix it trains with, kv mode equals peft's prefix."""

from __future__ import annotations

import copy

import pytest
import torch
from method_fixtures import (
    LlamaTestFamily,
    TinyLlavaTestFamily,
    build_llama,
    build_llava,
    greedy_vs_teacher_forced,
    llama_batch,
    llava_batch,
    method_cfg,
    with_labels,
)
from peft import PrefixTuningConfig, get_peft_model

from ptpeft_cli.errors import UserError
from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.prefix import find_prefix
from ptpeft_cli.models.base import LoadedModel


def perturb_stage2(model: torch.nn.Module) -> None:
    """Make zero-initialised LoRA B / adapter up-projections non-zero so stage 2 acts."""
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or ".up." in name:
                param.normal_(std=0.5)


@pytest.mark.parametrize("mode", ["input", "kv"])
@pytest.mark.parametrize("stage2", [None, "lora", "adapter"])
def test_generate_equals_teacher_forced_llava(mode: str, stage2: str | None) -> None:
    loaded = LoadedModel(build_llava(), None, TinyLlavaTestFamily())
    batch = llava_batch(left_pad=2)
    base_logits, _ = greedy_vs_teacher_forced(build_llava(), batch)
    cfg = method_cfg("pt_peft", prefix__mode=mode, stage2=stage2 or "lora")
    method = get_method("pt_peft")
    method.setup_stage(loaded, cfg, 0)
    if stage2:
        method.setup_stage(loaded, cfg, 1)
        perturb_stage2(loaded.model)
    generated, forward = greedy_vs_teacher_forced(loaded.model, batch)
    torch.testing.assert_close(generated, forward, atol=1e-5, rtol=0)
    assert (generated - base_logits).abs().max() > 1e-2  # the prefix reached generation


@pytest.mark.parametrize("mode", ["input", "kv"])
def test_generate_equals_teacher_forced_unprojected(mode: str) -> None:
    loaded = LoadedModel(build_llava(), None, TinyLlavaTestFamily())
    get_method("prefix").setup_stage(
        loaded, method_cfg("prefix", prefix__mode=mode, prefix__projection=False), 0
    )
    generated, forward = greedy_vs_teacher_forced(loaded.model, llava_batch(left_pad=3))
    torch.testing.assert_close(generated, forward, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["input", "kv"])
def test_generate_equals_teacher_forced_plain_llama(mode: str) -> None:
    """Not LLaVA-specific: a causal LM whose decoder stack receives `input_ids`."""
    loaded = LoadedModel(build_llama(), None, LlamaTestFamily())
    get_method("prefix").setup_stage(loaded, method_cfg("prefix", prefix__mode=mode), 0)
    batch = llama_batch()
    batch["input_ids"][0, :2] = 0
    batch["attention_mask"][0, :2] = 0
    generated, forward = greedy_vs_teacher_forced(loaded.model, batch)
    torch.testing.assert_close(generated, forward, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_kv_prefix_equals_peft_prefix_tuning(kv_heads: int) -> None:
    base = build_llama(kv_heads=kv_heads)
    reference = get_peft_model(
        copy.deepcopy(base),
        PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, prefix_projection=False),
    )
    loaded = LoadedModel(base, None, LlamaTestFamily())
    get_method("prefix").setup_stage(loaded, method_cfg("prefix", prefix__mode="kv"), 0)
    batch = llama_batch()
    batch["attention_mask"][0, :2] = 0
    with torch.no_grad():
        reference.prompt_encoder["default"].embedding.weight.copy_(
            find_prefix(loaded.model).encoder()
        )
        ours, theirs = loaded.model(**batch).logits, reference(**batch).logits
        plain = build_llama(kv_heads=kv_heads)(**batch).logits
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert (ours - plain).abs().max() > 1e-2


@pytest.mark.parametrize("mode", ["input", "kv"])
def test_outputs_keep_input_length_and_loss_trains_prefix(mode: str, llava: LoadedModel) -> None:
    get_method("prefix").setup_stage(llava, method_cfg("prefix", prefix__mode=mode), 0)
    batch = with_labels(llava_batch())
    out = llava.model(**batch, output_hidden_states=True)
    length = batch["input_ids"].shape[1]
    assert out.logits.shape[1] == length
    assert all(h.shape[1] == length for h in out.hidden_states)
    out.loss.backward()
    grads = [p.grad for p in find_prefix(llava.model).parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_merge_keeps_outputs_and_drops_the_mlp(llava: LoadedModel) -> None:
    get_method("prefix").setup_stage(llava, method_cfg("prefix"), 0)
    batch = llava_batch()
    tuner = find_prefix(llava.model)
    before_params = sum(p.numel() for p in tuner.parameters())
    with torch.no_grad():
        before = llava.model(**batch).logits
        tuner.encoder.merge_()
        after = llava.model(**batch).logits
    torch.testing.assert_close(before, after, atol=1e-6, rtol=0)
    assert sum(p.numel() for p in tuner.parameters()) == 3 * 32 < before_params


def test_gradient_checkpointing_input_mode_same_grads_kv_mode_refused() -> None:
    grads = []
    for checkpointing in (False, True):
        loaded = LoadedModel(build_llava(), None, TinyLlavaTestFamily())
        torch.manual_seed(0)
        get_method("prefix").setup_stage(loaded, method_cfg("prefix"), 0)
        if checkpointing:
            loaded.model.gradient_checkpointing_enable()
        loaded.model.train()
        loaded.model(**with_labels(llava_batch())).loss.backward()
        grads.append([p.grad.clone() for p in find_prefix(loaded.model).parameters()])
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(plain, checkpointed, atol=1e-6, rtol=0)

    loaded = LoadedModel(build_llava(), None, TinyLlavaTestFamily())
    get_method("prefix").setup_stage(loaded, method_cfg("prefix", prefix__mode="kv"), 0)
    loaded.model.gradient_checkpointing_enable()
    loaded.model.train()
    with pytest.raises(UserError, match="gradient checkpointing"):
        loaded.model(**with_labels(llava_batch()))


@pytest.mark.parametrize("mode", ["input", "kv"])
def test_cached_and_uncached_generation_agree_greedy_and_beam(
    mode: str, llava: LoadedModel
) -> None:
    """Without a cache the prefix is re-applied on every step; with one it lives in the cache."""
    get_method("prefix").setup_stage(llava, method_cfg("prefix", prefix__mode=mode), 0)
    batch = llava_batch(left_pad=2)
    options = dict(max_new_tokens=4, do_sample=False, suppress_tokens=[39, 2], pad_token_id=0)
    with torch.no_grad():
        for beams in (1, 3):
            cached = llava.model.generate(**batch, num_beams=beams, **options)
            uncached = llava.model.generate(**batch, num_beams=beams, use_cache=False, **options)
            assert torch.equal(cached, uncached)


def test_merged_prefix_saves_and_loads(llava: LoadedModel, tmp_path) -> None:
    method, cfg = get_method("prefix"), method_cfg("prefix", prefix__mode="kv")
    method.setup_stage(llava, cfg, 0)
    find_prefix(llava.model).encoder.merge_()
    method.save(llava, tmp_path)
    restored = LoadedModel(build_llava(), None, TinyLlavaTestFamily())
    method.load(restored, cfg, tmp_path)
    batch = llava_batch()
    with torch.no_grad():
        torch.testing.assert_close(
            restored.model(**batch).logits, llava.model(**batch).logits, atol=0, rtol=0
        )
    assert find_prefix(restored.model).encoder.mlp is None


def test_residual_encoder_starts_as_the_plain_prefix_and_still_trains_its_mlp() -> None:
    """Residual projection: starts as plain vectors do (real word embeddings), the MLP gets
    gradients, and generation sees the prefix it trains."""
    residual = LoadedModel(build_llava(), None, TinyLlavaTestFamily())
    get_method("prefix").setup_stage(residual, method_cfg("prefix", prefix__projection=True, prefix__residual=True), 0)
    encoder = find_prefix(residual.model).encoder
    table = TinyLlavaTestFamily().language_model(residual.model).get_input_embeddings().weight
    with torch.no_grad():
        start = encoder()
    torch.testing.assert_close(start, encoder.embedding.weight.detach(), atol=0, rtol=0)
    assert all((table == row).all(dim=1).any() for row in start)  # each row is a word's embedding
    residual.model(**with_labels(llava_batch())).loss.backward()
    assert encoder.mlp[-1].weight.grad.abs().sum() > 0
    perturb = torch.nn.init.normal_
    with torch.no_grad():
        perturb(encoder.mlp[-1].weight, std=0.1)
    generated, forward = greedy_vs_teacher_forced(residual.model, llava_batch(left_pad=2))
    torch.testing.assert_close(generated, forward, atol=1e-5, rtol=0)
