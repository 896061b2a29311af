"""A NaN/inf loss never reaches the weights: the run stops naming stage and step, or skips the step."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from ptpeft_cli.errors import RunStopped
from ptpeft_cli.training.hardware import resolve_hardware
from ptpeft_cli.training.loop import run_stage


def _stage(model: nn.Module, bad_steps: set[int], on_nonfinite: str, rows: list[dict]) -> None:
    calls = itertools.count(1)

    def loss_fn(batch: torch.Tensor) -> torch.Tensor:
        loss = model(batch).pow(2).mean()
        return loss * float("nan") if next(calls) in bad_steps else loss

    run_stage(model, itertools.repeat(torch.ones(4, 3)), name="prefix", lr=0.1, max_steps=5, grad_accum=1,
              weight_decay=0.0, warmup_ratio=0.0, scheduler="constant", max_grad_norm=1.0,
              hardware=resolve_hardware("cpu", "fp32"), log_every=1, log=rows.append, loss_fn=loss_fn,
              batch_size=lambda b: len(b), progress=False, on_nonfinite=on_nonfinite)


def test_nonfinite_loss_stops_the_run_naming_stage_and_step_and_keeps_the_last_good_weights() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    rows: list[dict] = []
    with pytest.raises(RunStopped, match="non-finite loss nan in stage prefix at step 3 of 5"):
        _stage(model, {3}, "stop", rows)
    after_two = model.weight.detach().clone()
    assert torch.isfinite(after_two).all() and len(rows) == 2  # steps 1-2 logged, step 3 never applied


def test_skip_drops_only_the_bad_step() -> None:
    torch.manual_seed(0)
    skipped_model, clean_model = nn.Linear(3, 2), nn.Linear(3, 2)
    clean_model.load_state_dict(skipped_model.state_dict())
    rows: list[dict] = []
    _stage(skipped_model, {3}, "skip", rows)
    assert rows[-1]["train/skipped_steps"] == 1 and len(rows) == 5
    assert torch.isfinite(skipped_model.weight).all()
    _stage(clean_model, set(), "skip", [])
    assert not torch.equal(skipped_model.weight, clean_model.weight)  # one update fewer
