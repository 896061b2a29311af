"""The loop reads losses from the device only when it logs, and logs the same values as reading
them every step: each step's loss is its micro-batch shares summed in order, each logged loss
the mean over the steps since the last log, the final loss the last step's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ptpeft_cli.training import loop
from ptpeft_cli.training.hardware import resolve_hardware


def test_logged_losses_equal_per_step_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(5)]
    batches = iter(data * 10)
    per_step: list[float] = []
    real_step = loop.train_step

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        parts = real_step(*args, **kwargs)
        total = 0.0
        for part in parts:
            total += float(part)  # what the loop used to do after every step
        per_step.append(total)
        return parts

    monkeypatch.setattr(loop, "train_step", spy)
    rows: list[dict] = []
    result = loop.run_stage(model, batches, name="t", lr=1e-2, max_steps=7, grad_accum=2, weight_decay=0.0,
                            warmup_ratio=0.0, scheduler="constant", max_grad_norm=1.0,
                            hardware=resolve_hardware("cpu", "fp32"), log_every=3, log=rows.append,
                            loss_fn=lambda batch: nn.functional.mse_loss(model(batch[0]), batch[1]),
                            batch_size=lambda batch: 8, progress=False)
    windows = [per_step[0:3], per_step[3:6], per_step[6:7]]
    assert [row["train/loss"] for row in rows] == [sum(w) / len(w) for w in windows]
    assert [row["step_in_stage"] for row in rows] == [3, 6, 7]
    assert result.final_loss == per_step[-1] and result.samples == 7 * 2 * 8
