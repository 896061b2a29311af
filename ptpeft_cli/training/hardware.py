"""Resolve `hardware.device` / `hardware.precision` into a device and an autocast context."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from dataclasses import dataclass

import numpy as np
import torch

from ptpeft_cli.errors import UserError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Hardware:
    device: torch.device
    precision: str  # fp32 | bf16 | fp16

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision only where it pays (CUDA); fp32 runs need no context."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_DTYPES[self.precision])

    def on(self, device: torch.device | None) -> Hardware:
        """The same precision on another device (a rank's own GPU); unchanged for None."""
        return self if device is None else dataclasses.replace(self, device=device)

    @property
    def needs_grad_scaler(self) -> bool:
        return self.precision == "fp16"


def resolve_hardware(device: str, precision: str, num_threads: int | None = None) -> Hardware:
    if num_threads:
        torch.set_num_threads(num_threads)
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise UserError("hardware.device=cuda but no CUDA device is visible; use hardware=auto or hardware=cpu")
    chosen = torch.device("cuda" if device == "cuda" or (device == "auto" and cuda) else "cpu")
    if precision == "auto":
        precision = "bf16" if chosen.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if chosen.type == "cuda":
        # TF32 tensor cores for what stays fp32 under autocast (Ampere+; ignored elsewhere).
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if chosen.type == "cpu" and precision != "fp32":
        raise UserError(f"hardware.precision={precision} needs CUDA here; use precision=fp32 on CPU")
    return Hardware(device=chosen, precision=precision)


def seed_everything(seed: int) -> None:
    """One seed for python, numpy and torch (all devices), so runs repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stage_seed(seed: int, stage: int) -> int:
    """The seed a method's stage starts from. Each stage is seeded afresh so that it trains the same
    whether the stages before it were trained here, loaded from the stage cache or restored by a
    resume (none of which leave the random state where training would). Stage 0 keeps the run's
    seed, so single-stage methods draw exactly what they always drew."""
    return seed + 1000 * stage
