"""Speed levers (`hardware.*`, `model.attn_implementation`): off on CPU by default, each switchable;
with them on the loop trains the same numbers (deferred loss reads, compiled layers) or refuses
what cannot work, with one line."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from ptpeft_cli.cli import compose_config
from ptpeft_cli.errors import RunStopped, UserError
from ptpeft_cli.models import get_family
from ptpeft_cli.training.hardware import compiled, hardware_from_config, resolve_hardware
from ptpeft_cli.training.loop import run_stage


def test_levers_are_off_on_cpu_by_default() -> None:
    hardware = hardware_from_config(compose_config("train", ["hardware=cpu"]).hardware)
    assert (hardware.fused_adamw, hardware.defer_sync, hardware.compile, hardware.count_flops) == (False, False, None,
                                                                                                  False)


def test_deferred_sync_needs_fused_adamw() -> None:
    with pytest.raises(UserError, match="hardware.defer_sync=true needs fused AdamW"):
        resolve_hardware("cpu", "fp32", fused_adamw=False, defer_sync=True)


def _train(defer: bool, bad_steps: set[int] = frozenset(), on_nonfinite: str = "skip",
           log_every: int = 3) -> tuple[nn.Module, list[dict]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    calls = itertools.count(1)

    def loss_fn(batch: torch.Tensor) -> torch.Tensor:
        loss = model(batch).pow(2).mean()
        return loss * float("nan") if next(calls) in bad_steps else loss

    rows: list[dict] = []
    run_stage(model, itertools.repeat(torch.linspace(-1, 1, 12).reshape(4, 3)), name="prefix", lr=0.05, max_steps=6,
              grad_accum=1, weight_decay=0.01, warmup_ratio=0.0, scheduler="linear", max_grad_norm=1.0,
              hardware=resolve_hardware("cpu", "fp32", fused_adamw=True, defer_sync=defer), log_every=log_every,
              log=rows.append, loss_fn=loss_fn, batch_size=len, progress=False, on_nonfinite=on_nonfinite)
    return model, rows


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_deferred_loss_reads_train_the_same_numbers() -> None:
    synced, synced_rows = _train(defer=False)
    deferred, deferred_rows = _train(defer=True)
    assert _same(synced, deferred)
    assert [r["train/loss"] for r in synced_rows] == [r["train/loss"] for r in deferred_rows]


def test_deferred_nonfinite_step_is_skipped_on_the_device() -> None:
    synced, synced_rows = _train(defer=False, bad_steps={2})
    deferred, deferred_rows = _train(defer=True, bad_steps={2})
    assert _same(synced, deferred) and torch.isfinite(deferred[0].weight).all()
    assert deferred_rows[-1]["train/skipped_steps"] == synced_rows[-1]["train/skipped_steps"] == 1
    assert [r["train/loss"] for r in synced_rows] == [r["train/loss"] for r in deferred_rows]
    clean, _ = _train(defer=True)
    assert not _same(clean, deferred)  # one update fewer


def test_deferred_nonfinite_step_stops_the_run_naming_it() -> None:
    with pytest.raises(RunStopped, match="non-finite loss nan in stage prefix at step 2 of 6; it never reached "
                                         "the weights.*noticed at step 3"):
        _train(defer=True, bad_steps={2}, on_nonfinite="stop")


def test_compiled_layers_give_the_same_outputs_and_are_released_after() -> None:
    torch.manual_seed(0)
    layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])
    x = torch.randn(3, 4)
    eager = layers[1](layers[0](x))
    with compiled(layers, "eager"):
        assert all(layer._compiled_call_impl is not None for layer in layers)
        assert torch.equal(layers[1](layers[0](x)), eager)
    assert all(layer._compiled_call_impl is None for layer in layers)


def test_unknown_compile_backend_is_refused() -> None:
    with pytest.raises(UserError, match="hardware.compile='turbo' is not a torch.compile backend here; choose one of: .*inductor"):
        resolve_hardware("cpu", "fp32", compile="turbo")


def test_attention_implementation_is_set_on_the_loaded_model() -> None:
    cfg = compose_config("train", ["model.attn_implementation=eager"])
    model = get_family("tiny_llava").load(cfg.model).model
    assert model.config._attn_implementation == "eager"
    assert model.config.text_config._attn_implementation == "eager"
