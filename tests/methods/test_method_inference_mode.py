"""Evaluation runs under `torch.inference_mode`: every method's hooks (prefix input/kv, adapters,
LoRA) must give the same outputs there as under `no_grad`, and training must still work after
an inference-mode pass (nothing created inside it may be kept for backward)."""

from __future__ import annotations

import pytest
import torch
from method_fixtures import (
    TinyLlavaTestFamily,
    build_llava,
    llava_batch,
    method_cfg,
    train_steps,
    with_labels,
)

from ptpeft_cli.analysis.features import collect_features
from ptpeft_cli.methods import get_method
from ptpeft_cli.models.base import LoadedModel

CASES = [("full", {}), ("lora", {}), ("adapter", {}), ("prefix", {"prefix__mode": "input"}),
         ("prefix", {"prefix__mode": "kv"}), ("pt_peft", {"stage2": "lora"}),
         ("pt_peft", {"stage2": "adapter", "prefix__mode": "kv"})]


def prepared(name: str, overrides: dict) -> LoadedModel:
    loaded = LoadedModel(build_llava(), None, TinyLlavaTestFamily())
    method, cfg = get_method(name), method_cfg(name, **overrides)
    for stage in range(len(method.stages(cfg, 4))):
        method.setup_stage(loaded, cfg, stage)
    torch.manual_seed(3)
    with torch.no_grad():  # zero-initialised LoRA B / adapter up-projections: make them act
        for param_name, param in loaded.model.named_parameters():
            if "lora_B" in param_name or ".up." in param_name:
                param.normal_(std=0.5)
    return loaded


@pytest.mark.parametrize("name,overrides", CASES)
def test_inference_mode_matches_no_grad_and_training_continues(name: str, overrides: dict) -> None:
    loaded = prepared(name, overrides)
    model, batch = loaded.model, llava_batch(left_pad=2)
    model.eval()
    with torch.no_grad():
        expected = model.generate(**batch, max_new_tokens=4, do_sample=False, output_logits=True,
                                  return_dict_in_generate=True, pad_token_id=0)
    with torch.inference_mode():
        got = model.generate(**batch, max_new_tokens=4, do_sample=False, output_logits=True,
                             return_dict_in_generate=True, pad_token_id=0)
    assert torch.equal(expected.sequences, got.sequences)
    for a, b in zip(expected.logits, got.logits, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)

    layer = loaded.family.decoder_layers(model)[-1]
    features = collect_features(model, {"last": layer}, [with_labels(batch)],
                                text_mask_fn=lambda b: b["attention_mask"].bool(), max_rows=64, seed=0)
    assert torch.isfinite(features["last"]).all()
    losses = train_steps(model, with_labels(batch), steps=2)  # after inference-mode passes, training still works
    assert all(torch.isfinite(torch.tensor(losses)))
