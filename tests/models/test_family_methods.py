"""Every method on every family (tiny checkpoints loaded from disk): what trains, what stays
bit-identical, identity at start, and generation that sees exactly what training sees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from family_checks import generation_batch, greedy_vs_teacher_forced, train_batch
from method_fixtures import method_cfg, snapshot, train_steps
from tiny_builders import FAMILY_NAMES

from ptpeft_cli.errors import UserError
from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.prefix import find_prefix
from ptpeft_cli.models import FAMILIES
from ptpeft_cli.models.base import LoadedModel

# id: (method, stages, overrides, predicate on the names of what trains)
CASES: dict[str, tuple[str, int, dict[str, Any], Callable[[str], bool]]] = {
    "full": ("full", 1, {}, lambda n: True),
    "lora": ("lora", 1, {}, lambda n: ".lora_" in n),
    "adapter": ("adapter", 1, {}, lambda n: ".ptpeft_adapter." in n),
    "prefix_input": ("prefix", 1, {}, lambda n: "ptpeft_prefix." in n),
    "prefix_kv": ("prefix", 1, {"prefix__mode": "kv"}, lambda n: "ptpeft_prefix." in n),
    "pt_lora": ("pt_peft", 2, {}, lambda n: ".lora_" in n or "ptpeft_prefix." in n),
    "pt_adapter": (
        "pt_peft",
        2,
        {"stage2": "adapter"},
        lambda n: ".ptpeft_adapter." in n or "ptpeft_prefix." in n,
    ),
}


def supports(loaded: LoadedModel, overrides: dict[str, Any], method: str) -> bool:
    mode = overrides.get("prefix__mode", "input")
    return method not in ("prefix", "pt_peft") or mode in loaded.family.prefix_modes


def setup(loaded: LoadedModel, name: str, stages: int, **overrides: Any) -> None:
    method, cfg = get_method(name), method_cfg(name, **overrides)
    for stage in range(stages):
        method.setup_stage(loaded, cfg, stage)


def perturb_stage2(model: torch.nn.Module) -> None:
    """Zero-initialised LoRA B / adapter up-projections made non-zero, so stage 2 acts."""
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or ".up." in name:
                param.normal_(std=0.5)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_only_the_trainable_set_moves(
    name: str, case: str, load: Callable[..., LoadedModel]
) -> None:
    loaded = load(name)
    method, stages, overrides, expected = CASES[case]
    if not supports(loaded, overrides, method):
        with pytest.raises(
            UserError, match=f"model family {name} does not support method.prefix.mode=kv"
        ):
            setup(loaded, method, stages, **overrides)
        return
    setup(loaded, method, stages, **overrides)
    model = loaded.model
    everything = {n for n, _ in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if method == "full":
        assert trainable == {n for n in everything if loaded.family.full_trainable(n, False)}
    else:
        assert trainable and trainable == {n for n in everything if expected(n)}
    before = snapshot(model)
    losses = train_steps(model, train_batch(loaded), steps=2)
    assert losses[1] != losses[0] and all(torch.isfinite(torch.tensor(losses)))
    for param_name, param in model.named_parameters():
        same = torch.equal(param, before[id(param)])
        assert same != (param_name in trainable), (
            f"{param_name}: trainable={param_name in trainable}"
        )


@pytest.mark.parametrize("case", ["lora", "adapter", "pt_lora", "pt_adapter"])
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_lora_and_adapters_start_as_identity(
    name: str, case: str, load: Callable[..., LoadedModel]
) -> None:
    loaded = load(name)
    method, stages, overrides, _ = CASES[case]
    batch = train_batch(loaded)
    if method == "pt_peft":
        setup(loaded, method, 1, **overrides)  # the reference is the prefixed model
    with torch.no_grad():
        before = loaded.model(**batch).logits
        get_method(method).setup_stage(loaded, method_cfg(method, **overrides), stages - 1)
        after = loaded.model(**batch).logits
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def supported_modes() -> list[tuple[str, str]]:
    """(family, prefix mode) pairs the family supports; refusals are tested on their own."""
    return [(n, m) for n in FAMILY_NAMES for m in FAMILIES.get(n).prefix_modes]


def equivalence_cases() -> list[tuple[str, str, str | None]]:
    return [(n, m, s) for n, m in supported_modes() for s in (None, "lora", "adapter")]


@pytest.mark.parametrize(("name", "mode", "stage2"), equivalence_cases())
def test_generate_equals_teacher_forced_with_prefix(
    name: str, mode: str, stage2: str | None, load: Callable[..., LoadedModel]
) -> None:
    """Greedy generation's step logits equal a teacher-forced forward over the same tokens
    (left-padded batch), with the prefix alone and with stage 2 on top of it."""
    loaded = load(name)
    batch = generation_batch(loaded)
    base, reference = greedy_vs_teacher_forced(load(name), batch)
    torch.testing.assert_close(base, reference, atol=1e-5, rtol=0)  # the helper itself is exact
    method, cfg = (
        get_method("pt_peft"),
        method_cfg("pt_peft", prefix__mode=mode, stage2=stage2 or "lora"),
    )
    method.setup_stage(loaded, cfg, 0)
    if stage2:
        method.setup_stage(loaded, cfg, 1)
        perturb_stage2(loaded.model)
    generated, forward = greedy_vs_teacher_forced(loaded, batch)
    torch.testing.assert_close(generated, forward, atol=1e-5, rtol=0)
    assert (generated - base).abs().max() > 1e-2  # the prefix reached generation


@pytest.mark.parametrize(("name", "mode"), supported_modes())
def test_training_forward_sees_the_same_model(
    name: str, mode: str, load: Callable[..., LoadedModel]
) -> None:
    """With labels, models switch caching off (BLIP, GIT); the prefix must not change with it."""
    loaded = load(name)
    setup(loaded, "prefix", 1, prefix__mode=mode)
    batch = train_batch(loaded)
    with torch.no_grad():
        with_labels = loaded.model(**batch)
        without = loaded.model(**{k: v for k, v in batch.items() if k != "labels"})
    torch.testing.assert_close(with_labels.logits, without.logits, atol=1e-6, rtol=0)
    assert with_labels.logits.shape[1] >= batch["input_ids"].shape[1]  # no prefix rows left


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_gradient_checkpointing_same_gradients_and_kv_refused(
    name: str, load: Callable[..., LoadedModel]
) -> None:
    grads = []
    for checkpointing in (False, True):
        loaded = load(name, gradient_checkpointing=checkpointing)
        assert (
            any(getattr(m, "gradient_checkpointing", False) for m in loaded.model.modules())
            == checkpointing
        )
        torch.manual_seed(0)
        setup(loaded, "pt_peft", 2)  # input prefix + LoRA: both get gradients through the stack
        loaded.model.train()
        loaded.model(**train_batch(loaded)).loss.backward()
        grads.append(
            {n: p.grad.clone() for n, p in loaded.model.named_parameters() if p.requires_grad}
        )
    assert any("lora_" in n for n in grads[0]) and any("ptpeft_prefix" in n for n in grads[0])
    for key, plain in grads[0].items():
        torch.testing.assert_close(grads[1][key], plain, atol=1e-6, rtol=1e-5)

    loaded = load(name, gradient_checkpointing=True)
    with pytest.raises(UserError, match=f"family {name}.*mode=kv"):
        setup(loaded, "prefix", 1, prefix__mode="kv")
    assert find_prefix(loaded.model) is None
