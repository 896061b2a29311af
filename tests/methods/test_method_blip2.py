"""The same mechanisms on BLIP-2 with OPT: not LLaVA- or Llama-specific."""

from __future__ import annotations

import pytest
import torch
from method_fixtures import (
    Blip2OptTestFamily,
    blip2_batch,
    build_blip2,
    greedy_vs_teacher_forced,
    method_cfg,
    snapshot,
    train_steps,
    with_labels,
)

from ptpeft_cli.methods import get_method
from ptpeft_cli.models.base import LoadedModel


@pytest.mark.parametrize("mode", ["input", "kv"])
@pytest.mark.parametrize("stage2", ["lora", "adapter"])
def test_pt_peft_generation_equals_teacher_forced_on_blip2_opt(mode: str, stage2: str) -> None:
    loaded = LoadedModel(build_blip2(), None, Blip2OptTestFamily())
    batch = blip2_batch()
    base_logits, _ = greedy_vs_teacher_forced(build_blip2(), batch, explicit_positions=False)
    method, cfg = get_method("pt_peft"), method_cfg("pt_peft", prefix__mode=mode, stage2=stage2)
    method.setup_stage(loaded, cfg, 0)
    with torch.no_grad():
        stage1_logits = loaded.model(**batch).logits
    method.setup_stage(loaded, cfg, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**batch).logits, stage1_logits, atol=0, rtol=0)
        for name, param in loaded.model.named_parameters():
            if "lora_B" in name or ".up." in name:
                param.normal_(std=0.5)
    generated, forward = greedy_vs_teacher_forced(loaded.model, batch, explicit_positions=False)
    torch.testing.assert_close(generated, forward, atol=1e-5, rtol=0)
    assert (generated - base_logits).abs().max() > 1e-2


def test_adapter_trains_only_itself_on_blip2_opt() -> None:
    loaded = LoadedModel(build_blip2(), None, Blip2OptTestFamily())
    get_method("adapter").setup_stage(loaded, method_cfg("adapter"), 0)
    before = snapshot(loaded.model)
    batch = blip2_batch()
    batch["input_ids"][0, :2] = 5  # labels need no padding here
    batch["attention_mask"][:] = 1
    train_steps(loaded.model, with_labels(batch), steps=2)
    for name, param in loaded.model.named_parameters():
        assert torch.equal(param, before[id(param)]) != ("ptpeft_adapter" in name), name
