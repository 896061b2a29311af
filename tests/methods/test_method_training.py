"""Frozen means frozen, identity at start, exact parameter counts."""

from __future__ import annotations

import pytest
import torch
from method_fixtures import llava_batch, method_cfg, snapshot, train_steps, with_labels

from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.base import count_parameters
from ptpeft_cli.models.base import LoadedModel

H, LAYERS, KV_DIM = 32, 2, 2 * 8  # tiny Llama: hidden 32, 2 layers, 2 kv heads x head_dim 8


def setup(loaded: LoadedModel, name: str, stages: int = 1, **overrides: object) -> None:
    cfg = method_cfg(name, **overrides)
    method = get_method(name)
    for stage in range(stages):
        method.setup_stage(loaded, cfg, stage)


CASES = {
    # id: (method, stages, overrides, predicate on trainable parameter names)
    "full": ("full", 1, {}, lambda n: "vision_tower" not in n),
    "lora": ("lora", 1, {}, lambda n: ".lora_" in n),
    "lora_mlp": ("lora", 1, {"lora__mlp": True}, lambda n: ".lora_" in n),
    "adapter": ("adapter", 1, {}, lambda n: ".ptpeft_adapter." in n),
    "prefix_input": ("prefix", 1, {}, lambda n: n.startswith("ptpeft_prefix.")),
    "prefix_kv": ("prefix", 1, {"prefix__mode": "kv"}, lambda n: n.startswith("ptpeft_prefix.")),
    "pt_lora": ("pt_peft", 2, {}, lambda n: ".lora_" in n or "ptpeft_prefix." in n),
    "pt_adapter": (
        "pt_peft",
        2,
        {"stage2": "adapter"},
        lambda n: "ptpeft_adapter." in n or "ptpeft_prefix." in n,
    ),
    "pt_lora_frozen_prefix": (
        "pt_peft",
        2,
        {"train_prefix_in_stage2": False},
        lambda n: ".lora_" in n,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_only_the_trainable_set_moves(case: str, llava: LoadedModel) -> None:
    name, stages, overrides, expected = CASES[case]
    setup(llava, name, stages, **overrides)
    trainable = {n for n, p in llava.model.named_parameters() if p.requires_grad}
    everything = {n for n, _ in llava.model.named_parameters()}
    assert trainable and trainable == {n for n in everything if expected(n)}

    before = snapshot(llava.model)
    losses = train_steps(llava.model, with_labels(llava_batch()), steps=3)
    assert losses[-1] < losses[0]
    for param_name, param in llava.model.named_parameters():
        same = torch.equal(param, before[id(param)])
        if param_name in trainable:
            assert not same, f"{param_name} is trainable but did not move"
        else:
            assert same, f"{param_name} is frozen but changed"


@pytest.mark.parametrize("case", ["lora", "lora_mlp", "adapter", "pt_lora", "pt_adapter"])
def test_stage2_methods_are_identity_at_start(case: str, llava: LoadedModel) -> None:
    name, stages, overrides, _ = CASES[case]
    batch = llava_batch()
    if name == "pt_peft":
        setup(llava, name, 1, **overrides)  # stage 0: the reference is the prefixed model
    with torch.no_grad():
        before = llava.model(**batch).logits
        method_cfg_ = method_cfg(name, **overrides)
        get_method(name).setup_stage(llava, method_cfg_, stages - 1)
        after = llava.model(**batch).logits
    torch.testing.assert_close(before, after, atol=0, rtol=0)


def test_count_parameters_is_exact_with_tied_embeddings(llava: LoadedModel) -> None:
    model = llava.model
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    by_hand = sum(p.numel() for n, p in model.state_dict().items() if n != "lm_head.weight")
    trainable, total = count_parameters(model)
    assert (trainable, total) == (by_hand, by_hand)  # a fresh model trains everything


def expected_counts() -> dict[str, int]:
    bottleneck, length, enc = 4, 3, 16  # method_cfg's small options
    lora_r = 8
    per_layer_lora = lora_r * ((H + H) + (H + KV_DIM) + (H + KV_DIM) + (H + H))  # q, k, v, o
    mlp_lora = lora_r * ((H + 64) * 3)  # gate, up (32->64), down (64->32)
    kv_out = LAYERS * 2 * KV_DIM
    return {
        "adapter": LAYERS * 2 * (H * bottleneck + bottleneck + bottleneck * H + H),
        "prefix_input": length * H + (H * enc + enc) + (enc * H + H),
        "prefix_kv": length * H + (H * enc + enc) + (enc * kv_out + kv_out),
        "prefix_input_plain": length * H,
        "prefix_kv_plain": length * kv_out,
        "lora": LAYERS * per_layer_lora,
        "lora_mlp": LAYERS * (per_layer_lora + mlp_lora),
    }


@pytest.mark.parametrize(
    "case, name, overrides",
    [
        ("adapter", "adapter", {}),
        ("prefix_input", "prefix", {}),
        ("prefix_kv", "prefix", {"prefix__mode": "kv"}),
        ("prefix_input_plain", "prefix", {"prefix__projection": False}),
        ("prefix_kv_plain", "prefix", {"prefix__mode": "kv", "prefix__projection": False}),
        ("lora", "lora", {}),
        ("lora_mlp", "lora", {"lora__mlp": True}),
    ],
)
def test_trainable_counts_match_hand_computation(
    case: str, name: str, overrides: dict, llava: LoadedModel
) -> None:
    _, base_total = count_parameters(llava.model)
    setup(llava, name, **overrides)
    trainable, total = count_parameters(llava.model)
    assert trainable == expected_counts()[case]
    assert total == base_total + trainable  # the base is counted once, wrapped or not


def test_full_trains_everything_but_the_vision_tower(llava: LoadedModel) -> None:
    vision = sum(p.numel() for p in llava.model.model.vision_tower.parameters())
    _, total = count_parameters(llava.model)
    setup(llava, "full")
    assert count_parameters(llava.model) == (total - vision, total)
    setup(llava, "full", train_vision=True)
    assert count_parameters(llava.model) == (total, total)


def test_stage_plans_inherit_method_values() -> None:
    cfg = method_cfg("pt_peft", lr=2e-3)
    cfg.stage1.lr, cfg.stage2_options.max_steps = 5e-3, 7
    plans = get_method("pt_peft").stages(cfg, default_steps=100)
    assert [(p.lr, p.max_steps) for p in plans] == [(5e-3, 100), (2e-3, 7)]
    assert [(p.lr, p.max_steps) for p in get_method("lora").stages(cfg, 50)] == [(2e-3, 50)]
