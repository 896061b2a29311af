"""Resolve `hardware.*` into a device, an autocast context and the speed levers.

Each lever is switchable (so `make bench-gpu --levers` can measure it on and off) and `None`
means automatic: on where it pays and numerics need not match CPU runs (CUDA), off on CPU, so
CPU fp32 runs train bit-identically with or without them."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ptpeft_cli.errors import UserError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Hardware:
    device: torch.device
    precision: str  # fp32 | bf16 | fp16
    fused_adamw: bool = False  # AdamW's single fused kernel
    defer_sync: bool = False  # read the loss back at log steps only (needs fused AdamW)
    compile: str | None = None  # torch.compile backend for each decoder layer while training
    count_flops: bool = False  # count each stage's first step's model FLOPs (throughput/tflops, mfu)

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


def resolve_hardware(device: str, precision: str, num_threads: int | None = None, *,
                     fused_adamw: bool | None = None, defer_sync: bool | None = None, compile: str | None = None,
                     count_flops: bool | None = None) -> Hardware:
    """The device and precision (`auto`: CUDA with bf16 where present) and the levers (None: on
    CUDA, off on CPU; deferred syncs only where fused AdamW and no fp16 grad scaler are used)."""
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
    cuda = chosen.type == "cuda"
    fused = cuda if fused_adamw is None else bool(fused_adamw)
    if defer_sync and not fused:
        raise UserError("hardware.defer_sync=true needs fused AdamW (it skips a NaN step on the device): set "
                        "hardware.fused_adamw=true, or hardware.defer_sync=null")
    if defer_sync and precision == "fp16":
        raise UserError("hardware.defer_sync=true with hardware.precision=fp16: the fp16 grad scaler reads the "
                        "loss every step; use precision=bf16, or hardware.defer_sync=null")
    defer = (fused and precision != "fp16" and cuda) if defer_sync is None else bool(defer_sync)
    if compile:
        check_compile_backend(compile)
    return Hardware(device=chosen, precision=precision, fused_adamw=fused, defer_sync=defer, compile=compile or None,
                    count_flops=cuda if count_flops is None else bool(count_flops))


def hardware_from_config(hardware: Any) -> Hardware:
    """`resolve_hardware` for a run's `hardware` config group."""
    return resolve_hardware(hardware.device, hardware.precision, hardware.num_threads,
                            fused_adamw=hardware.fused_adamw, defer_sync=hardware.defer_sync,
                            compile=hardware.compile, count_flops=hardware.count_flops)


def check_compile_backend(backend: str) -> None:
    import torch._dynamo

    if backend not in torch._dynamo.list_backends(exclude_tags=()):  # debugging backends are allowed, not listed
        raise UserError(f"hardware.compile={backend!r} is not a torch.compile backend here; choose one of: "
                        f"{', '.join(sorted(torch._dynamo.list_backends()))} (or null: no compilation)")


@contextlib.contextmanager
def compiled(layers: Iterable[torch.nn.Module], backend: str | None) -> Iterator[None]:
    """Each decoder layer compiled on its own while a stage trains (regional compilation: the
    layers share one graph, so it compiles once and in seconds, where the whole model would
    break into pieces at its data-dependent image merging). Generation and analysis afterwards
    run eagerly again: nn.Module has no public inverse of `compile()`, so its
    `_compiled_call_impl` is cleared."""
    layers = list(layers) if backend else []
    for layer in layers:
        layer.compile(backend=backend)
    try:
        yield
    finally:
        for layer in layers:
            layer._compiled_call_impl = None


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
