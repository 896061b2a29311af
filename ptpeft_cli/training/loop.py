"""The training loop, readable top to bottom. `train_step` stands alone so `make bench` can time it
against a bare PyTorch loop."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from ptpeft_cli.training.hardware import Hardware


@dataclass
class StageResult:
    name: str
    steps: int
    final_loss: float
    seconds: float
    samples: int

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, max_steps: int,
                    warmup_ratio: float, scheduler: str) -> tuple[torch.optim.Optimizer, object]:
    params = trainable_parameters(model)
    if not params:
        raise RuntimeError("the method left no trainable parameter")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    lr_scheduler = get_scheduler(scheduler, optimizer, num_warmup_steps=math.ceil(warmup_ratio * max_steps),
                                 num_training_steps=max_steps)
    return optimizer, lr_scheduler


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def train_step(model: nn.Module, micro_batches: list[dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer,
               lr_scheduler: object, hardware: Hardware, max_grad_norm: float,
               scaler: torch.amp.GradScaler | None = None) -> float:
    """One optimizer step over `micro_batches` (gradient accumulation). Returns the mean loss."""
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for micro in micro_batches:
        with hardware.autocast():
            loss = model(**to_device(micro, hardware.device)).loss / len(micro_batches)
        (scaler.scale(loss) if scaler else loss).backward()
        total += float(loss.detach())
    if scaler:
        scaler.unscale_(optimizer)
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(trainable_parameters(model), max_grad_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    lr_scheduler.step()
    return total


def cycle(loader: DataLoader, start_epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches; each epoch reshuffles from the loader's seeded generator."""
    for epoch in itertools.count(start_epoch):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        yield from loader


def run_stage(model: nn.Module, loader: DataLoader, *, name: str, lr: float, max_steps: int,
              grad_accum: int, weight_decay: float, warmup_ratio: float, scheduler: str,
              max_grad_norm: float, hardware: Hardware, log_every: int,
              log: Callable[[dict], None]) -> StageResult:
    """Train one stage for `max_steps` optimizer steps, logging every `log_every`."""
    model.train()
    optimizer, lr_scheduler = build_optimizer(model, lr, weight_decay, max_steps, warmup_ratio, scheduler)
    scaler = torch.amp.GradScaler() if hardware.needs_grad_scaler else None
    batches = cycle(loader)
    start, samples, loss = time.perf_counter(), 0, float("nan")
    window: list[float] = []
    for step in tqdm(range(1, max_steps + 1), desc=f"train[{name}]", leave=False):
        micro = [next(batches) for _ in range(grad_accum)]
        loss = train_step(model, micro, optimizer, lr_scheduler, hardware, max_grad_norm, scaler)
        samples += sum(int(m["input_ids"].shape[0]) for m in micro)
        window.append(loss)
        if step % log_every == 0 or step == max_steps:
            log({"stage": name, "step_in_stage": step, "train/loss": sum(window) / len(window),
                 "train/lr": lr_scheduler.get_last_lr()[0],
                 "throughput/samples_per_s": samples / (time.perf_counter() - start)})
            window = []
    model.eval()
    return StageResult(name=name, steps=max_steps, final_loss=loss, seconds=time.perf_counter() - start,
                       samples=samples)
