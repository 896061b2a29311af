"""The training loop, readable top to bottom. `train_step` stands alone so `make bench` can time it
against a bare PyTorch loop. Fine-tuning and the tiny model's pre-training both run on it: a stage
is a model, an endless batch source, and optionally its own loss and parameter groups."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from ptpeft_cli.errors import RunStopped
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


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, max_steps: int, warmup_steps: int,
                    scheduler: str, param_groups: list[dict[str, Any]] | None = None
                    ) -> tuple[torch.optim.Optimizer, object]:
    """AdamW over the trainable parameters (or explicit groups, e.g. a lower lr for a tower)."""
    groups: Any = param_groups or trainable_parameters(model)
    if not groups:
        raise RuntimeError("the method left no trainable parameter")
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    lr_scheduler = get_scheduler(scheduler, optimizer, num_warmup_steps=warmup_steps, num_training_steps=max_steps)
    return optimizer, lr_scheduler


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


LossFn = Callable[[Any], torch.Tensor]


class NonFiniteLoss(Exception):
    def __init__(self, loss: float) -> None:
        super().__init__(f"non-finite loss {loss}")
        self.loss = loss


def train_step(model: nn.Module, micro_batches: list[Any], optimizer: torch.optim.Optimizer,
               lr_scheduler: object, hardware: Hardware, max_grad_norm: float,
               scaler: torch.amp.GradScaler | None = None, loss_fn: LossFn | None = None,
               skip_nonfinite: bool = False) -> float:
    """One optimizer step over `micro_batches` (gradient accumulation). Returns the mean loss.
    Without `loss_fn` a batch is the model's keyword inputs and the model returns `.loss`.

    A NaN/inf loss never reaches the weights: it raises NonFiniteLoss, or with `skip_nonfinite`
    the step is dropped (the schedule still advances, so the run's length is unchanged)."""
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for micro in micro_batches:
        with hardware.autocast():
            loss = (loss_fn(micro) if loss_fn else model(**to_device(micro, hardware.device)).loss) / len(micro_batches)
        (scaler.scale(loss) if scaler else loss).backward()
        total += float(loss.detach())
    if not math.isfinite(total):
        optimizer.zero_grad(set_to_none=True)
        if not skip_nonfinite:
            raise NonFiniteLoss(total)
        lr_scheduler.step()
        return total
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


def cycle(loader: Iterable[Any], start_epoch: int = 0) -> Iterator[Any]:
    """Endless batches; each epoch of a DataLoader reshuffles from its seeded generator. An
    iterator (e.g. a sampler drawing batches forever) is used as it is."""
    if isinstance(loader, Iterator):
        yield from loader
        return
    for epoch in itertools.count(start_epoch):
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        yield from loader


def run_stage(model: nn.Module, loader: DataLoader | Iterable[Any], *, name: str, lr: float, max_steps: int,
              grad_accum: int, weight_decay: float, warmup_ratio: float, scheduler: str,
              max_grad_norm: float, hardware: Hardware, log_every: int,
              log: Callable[[dict], None], loss_fn: LossFn | None = None,
              param_groups: list[dict[str, Any]] | None = None, batch_size: Callable[[Any], int] | None = None,
              warmup_steps: int | None = None, progress: bool = True, on_nonfinite: str = "stop") -> StageResult:
    """Train one stage for `max_steps` optimizer steps, logging every `log_every`.

    `warmup_steps` defaults to ceil(warmup_ratio * max_steps); `batch_size(batch)` counts samples
    for the throughput (default: rows of `input_ids`). A non-finite loss stops the run with the
    stage and step named (`on_nonfinite="stop"`) or skips that step (`"skip"`, counted in the log)."""
    model.train()
    warmup = math.ceil(warmup_ratio * max_steps) if warmup_steps is None else warmup_steps
    optimizer, lr_scheduler = build_optimizer(model, lr, weight_decay, max_steps, warmup, scheduler, param_groups)
    scaler = torch.amp.GradScaler() if hardware.needs_grad_scaler else None
    batches = cycle(loader)
    count = batch_size or (lambda batch: int(batch["input_ids"].shape[0]))
    start, samples, loss = time.perf_counter(), 0, float("nan")
    window: list[float] = []
    skipped = 0
    for step in tqdm(range(1, max_steps + 1), desc=f"train[{name}]", leave=False, disable=not progress,
                     mininterval=2):
        micro = [next(batches) for _ in range(grad_accum)]
        try:
            loss = train_step(model, micro, optimizer, lr_scheduler, hardware, max_grad_norm, scaler, loss_fn,
                              skip_nonfinite=on_nonfinite == "skip")
        except NonFiniteLoss as error:
            raise RunStopped(f"{error} in stage {name} at step {step} of {max_steps}; the weights of the last "
                             "finite step were not saved (trainer.on_nonfinite=skip drops such steps instead)") from None
        samples += sum(count(m) for m in micro)
        if math.isfinite(loss):
            window.append(loss)
        else:
            skipped += 1
        if step % log_every == 0 or step == max_steps:
            log({"stage": name, "step_in_stage": step,
                 "train/loss": sum(window) / len(window) if window else float("nan"),
                 "train/lr": lr_scheduler.get_last_lr()[0], "train/skipped_steps": skipped,
                 "throughput/samples_per_s": samples / (time.perf_counter() - start)})
            window = []
    model.eval()
    return StageResult(name=name, steps=max_steps, final_loss=loss, seconds=time.perf_counter() - start,
                       samples=samples)
