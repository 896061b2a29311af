"""The training loop, readable top to bottom. `train_step` stands alone so `make bench` can time it
against a bare PyTorch loop. Fine-tuning and the tiny model's pre-training both run on it: a stage
is a model, an endless batch source, and optionally its own loss and parameter groups.

Speed levers (`Hardware`, each switchable so `make bench-gpu` can measure it): fused AdamW, and
`defer_sync`, which leaves the loss on the device until the next log step instead of waiting for
every step (a NaN/inf step is then skipped on the device by fused AdamW's `found_inf`)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import get_scheduler

from ptpeft_cli.errors import RunStopped, UserError
from ptpeft_cli.training.distributed import Distributed
from ptpeft_cli.training.hardware import Hardware
from ptpeft_cli.training.throughput import StageMeter, batch_tokens, counting_flops


@dataclass
class StageResult:
    name: str
    steps: int
    final_loss: float
    seconds: float
    samples: int
    # Since StageMeter (training/throughput.py); defaults keep results saved by older checkpoints loadable.
    tokens: int = 0
    warm_seconds: float = 0.0
    warm_samples: int = 0
    warm_tokens: int = 0
    flops_per_token: float | None = None
    memory: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, max_steps: int, warmup_steps: int,
                    scheduler: str, param_groups: list[dict[str, Any]] | None = None, fused: bool = False
                    ) -> tuple[torch.optim.Optimizer, object]:
    """AdamW over the trainable parameters (or explicit groups, e.g. a lower lr for a tower);
    `fused`: one kernel for all parameters instead of torch's default (foreach) implementation."""
    groups: Any = param_groups or trainable_parameters(model)
    if not groups:
        raise RuntimeError("the method left no trainable parameter")
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, **({"fused": True} if fused else {}))
    lr_scheduler = get_scheduler(scheduler, optimizer, num_warmup_steps=warmup_steps, num_training_steps=max_steps)
    return optimizer, lr_scheduler


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


LossFn = Callable[[Any], torch.Tensor]


class NonFiniteLoss(Exception):
    def __init__(self, loss: float) -> None:
        super().__init__(f"non-finite loss {loss}")
        self.loss = loss


def target_tokens(batch: Any) -> int:
    """Tokens a causal-LM loss averages over: labels after the one-token shift, padding excluded."""
    return int((batch["labels"][..., 1:] != -100).sum())


def train_step(model: nn.Module, micro_batches: list[Any], optimizer: torch.optim.Optimizer,
               lr_scheduler: object, hardware: Hardware, max_grad_norm: float,
               scaler: torch.amp.GradScaler | None = None, loss_fn: LossFn | None = None,
               skip_nonfinite: bool = False, dist: Distributed | None = None,
               defer_sync: bool = False) -> float | torch.Tensor:
    """One optimizer step over `micro_batches` (gradient accumulation). Returns the step's loss.
    Without `loss_fn` a batch is the model's keyword inputs and the model returns `.loss`.

    Several micro-batches or processes: each micro-batch's mean loss is weighted by its share of
    the step's target tokens (counted over all ranks), so the step's gradient and loss are those
    of one big batch, whatever its split (DDP averages gradients over ranks, hence the factor
    world_size). One micro-batch on one process: the weight is exactly 1. Gradients are synced
    only on the last micro-batch.

    A NaN/inf loss never reaches the weights: it raises NonFiniteLoss, or with `skip_nonfinite`
    the step is dropped (the schedule still advances, so the run's length is unchanged).
    `defer_sync` (one process, fused AdamW, no grad scaler): nothing waits for the device; the
    loss comes back as a 0-dim device tensor and a NaN/inf step is dropped on the device (fused
    AdamW's `found_inf` skips the update, moments and step count included); the caller decides
    between stopping and skipping when it next reads the loss."""
    dist = dist or Distributed()
    optimizer.zero_grad(set_to_none=True)
    if loss_fn is None:
        tokens = [target_tokens(micro) for micro in micro_batches]
        step_tokens = dist.sum([float(sum(tokens))], hardware.device)[0]
        weights = [n * dist.world_size / step_tokens for n in tokens]
    else:  # a custom loss (pre-training) is averaged per micro-batch
        weights = [1 / len(micro_batches)] * len(micro_batches)
    total: Any = 0.0
    for index, (micro, weight) in enumerate(zip(micro_batches, weights, strict=True)):
        with dist.no_sync(model, skip=index < len(micro_batches) - 1):
            with hardware.autocast():
                loss = (loss_fn(micro) if loss_fn else model(**to_device(micro, hardware.device)).loss) * weight
            (scaler.scale(loss) if scaler else loss).backward()
        total = total + loss.detach().float() if defer_sync else total + float(loss.detach())
    if defer_sync:
        if max_grad_norm > 0:
            dist.clip_grad_norm_(trainable_parameters(model), max_grad_norm)
        optimizer.found_inf = (~torch.isfinite(total)).float()  # read by fused AdamW's step
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
        lr_scheduler.step()
        return total
    total = dist.sum([total], hardware.device)[0] / dist.world_size  # every rank sees the same loss
    if not math.isfinite(total):
        optimizer.zero_grad(set_to_none=True)
        if not skip_nonfinite:
            raise NonFiniteLoss(total)
        lr_scheduler.step()
        return total
    if scaler:
        scaler.unscale_(optimizer)
    if max_grad_norm > 0:
        dist.clip_grad_norm_(trainable_parameters(model), max_grad_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    lr_scheduler.step()
    return total


class StepLosses:
    """Step losses as `train_step` returns them (floats, or device tensors with `defer_sync`),
    read back to the host in one go at log steps, checkpoints and the stage's end."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, float | torch.Tensor]] = []

    def add(self, step: int, loss: float | torch.Tensor) -> None:
        self.pending.append((step, loss))

    def read(self) -> list[tuple[int, float]]:
        tensors = [loss for _, loss in self.pending if torch.is_tensor(loss)]
        values = iter(torch.stack(tensors).tolist() if tensors else [])  # one wait for the device
        out = [(step, next(values) if torch.is_tensor(loss) else float(loss)) for step, loss in self.pending]
        self.pending = []
        return out


class ResumableRandomSampler(Sampler[int]):
    """torch's RandomSampler order for a seeded generator, plus a data position a checkpoint can
    record (generator state at the epoch's start, examples consumed) and restore without loading
    a single example."""

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size, self.generator = size, generator
        self.epoch_state: torch.Tensor | None = None
        self._restore: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        skip = 0
        if self._restore is not None:
            self.generator.set_state(self._restore["epoch_state"])
            skip, self._restore = int(self._restore["consumed"]), None
        self.epoch_state = self.generator.get_state()
        yield from torch.randperm(self.size, generator=self.generator).tolist()[skip:]
        # RandomSampler draws one more (empty-sliced) permutation at the end of every epoch; so do
        # we, so that the generator advances exactly as before and runs keep their data order.
        torch.randperm(self.size, generator=self.generator)

    def reseed(self, seed: int) -> None:
        """A fresh order for a new stage, independent of what earlier stages drew."""
        self.generator.manual_seed(seed)
        self._restore = None

    def restore(self, position: dict[str, Any]) -> None:
        """The next epoch continues the recorded one where it stopped."""
        self._restore = position


def resumable_sampler(loader: Any) -> ResumableRandomSampler | None:
    """The loader's ResumableRandomSampler, also behind a rank's batch sampler (BatchSamplerShard)."""
    for candidate in (getattr(loader, "sampler", None),
                      getattr(getattr(getattr(loader, "batch_sampler", None), "batch_sampler", None), "sampler", None)):
        if isinstance(candidate, ResumableRandomSampler):
            return candidate
    return None


class BatchStream:
    """Endless batches from a loader, one fresh epoch per stage; knows its data position."""

    def __init__(self, loader: Iterable[Any], position: dict[str, Any] | None = None) -> None:
        self.loader = loader
        self.sampler = resumable_sampler(loader)
        # A rank's loader yields its slice of each batch; positions count whole (global) batches.
        self.batch_size = getattr(loader, "global_batch_size", None) or getattr(loader, "batch_size", None) or 1
        self.in_epoch = 0
        if position is not None:
            if not isinstance(self.sampler, ResumableRandomSampler):
                raise ValueError("this loader cannot resume a data position")
            self.sampler.restore(position)
            self.in_epoch = int(position["consumed"]) // self.batch_size
        self._batches = self._endless()

    def _endless(self) -> Iterator[Any]:
        if isinstance(self.loader, Iterator):
            yield from self.loader
            return
        while True:
            for batch in self.loader:
                self.in_epoch += 1
                yield batch
            if self.in_epoch == 0:  # an epoch with no batch: looping again would spin forever
                raise UserError("the training data gives no batch (fewer examples than one batch, and only "
                                "whole batches are used); lower the batch size or give it more examples")
            self.in_epoch = 0

    def __next__(self) -> Any:
        return next(self._batches)

    def position(self) -> dict[str, Any] | None:
        if not isinstance(self.sampler, ResumableRandomSampler) or self.sampler.epoch_state is None:
            return None
        return {"epoch_state": self.sampler.epoch_state, "consumed": self.in_epoch * self.batch_size}


def run_stage(model: nn.Module, loader: DataLoader | Iterable[Any], *, name: str, lr: float, max_steps: int,
              grad_accum: int, weight_decay: float, warmup_ratio: float, scheduler: str,
              max_grad_norm: float, hardware: Hardware, log_every: int,
              log: Callable[[dict], None], loss_fn: LossFn | None = None,
              param_groups: list[dict[str, Any]] | None = None, batch_size: Callable[[Any], int] | None = None,
              warmup_steps: int | None = None, progress: bool = True, on_nonfinite: str = "stop",
              checkpoint_every: int = 0, checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
              resume: tuple[int, dict[str, Any]] | None = None, dist: Distributed | None = None,
              on_first_step: Callable[[], None] | None = None) -> StageResult:
    """Train one stage for `max_steps` optimizer steps, logging every `log_every`.

    `warmup_steps` defaults to ceil(warmup_ratio * max_steps); `batch_size(batch)` counts samples
    for the throughput (default: rows of `input_ids`). A non-finite loss stops the run with the
    stage and step named (`on_nonfinite="stop"`) or skips that step (`"skip"`, counted in the log).
    Every `checkpoint_every` steps `checkpoint(step, trainer_state)` gets everything needed to go
    on exactly (optimizer, scheduler, scaler, RNG, data position, log window); `resume=(step,
    trainer_state)` goes on from such a state, the trainable weights already restored. With several
    processes (`dist`) `model` is the stage's DDP-wrapped model and samples count over all ranks.
    Tokens, warm-step throughput, peak memory and (with `hardware.count_flops`) the first step's
    model FLOPs go into the result (training/throughput.py); `on_first_step()` runs once the first
    step is done."""
    from ptpeft_cli.training.checkpoint import rng_state, set_rng_state

    model.train()
    warmup = math.ceil(warmup_ratio * max_steps) if warmup_steps is None else warmup_steps
    optimizer, lr_scheduler = build_optimizer(model, lr, weight_decay, max_steps, warmup, scheduler, param_groups,
                                              fused=hardware.fused_adamw)
    scaler = torch.amp.GradScaler() if hardware.needs_grad_scaler else None
    defer = hardware.defer_sync and scaler is None and (dist is None or dist.world_size == 1)
    count = batch_size or (lambda batch: int(batch["input_ids"].shape[0]))
    ranks = dist.world_size if dist else 1  # every rank trains an equal slice
    meter = StageMeter(hardware.device, warm_after=2 if hardware.compile else 1)
    start, samples, loss = meter.start, 0, float("nan")
    window: list[float] = []
    losses = StepLosses()
    skipped, first = 0, 1
    if resume is not None:
        first, state = resume[0] + 1, resume[1]
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        window, skipped, samples = list(state["window"]), int(state["skipped"]), int(state["samples"])
        meter.tokens = int(state.get("tokens", 0))
        set_rng_state(state["rng"])
    batches = BatchStream(loader, resume[1]["data"] if resume is not None else None)

    def read_losses() -> None:
        """Move the steps' losses into the log window; a deferred NaN/inf step stops the run here."""
        nonlocal loss, skipped
        for bad_step, loss in losses.read():
            if math.isfinite(loss):
                window.append(loss)
            elif on_nonfinite == "stop":
                raise RunStopped(f"non-finite loss {loss} in stage {name} at step {bad_step} of {max_steps}; it never "
                                 "reached the weights, the run stops without saving them (hardware.defer_sync noticed "
                                 f"at step {step}; trainer.on_nonfinite=skip drops such steps instead)")
            else:
                skipped += 1

    for step in tqdm(range(first, max_steps + 1), desc=f"train[{name}]", leave=False, disable=not progress,
                     mininterval=2, initial=first - 1, total=max_steps):
        micro = [next(batches) for _ in range(grad_accum)]
        counting = counting_flops(model) if hardware.count_flops and step == first else contextlib.nullcontext()
        try:
            with counting as counter:
                losses.add(step, train_step(model, micro, optimizer, lr_scheduler, hardware, max_grad_norm, scaler,
                                            loss_fn, skip_nonfinite=on_nonfinite == "skip", dist=dist,
                                            defer_sync=defer))
        except NonFiniteLoss as error:
            raise RunStopped(f"{error} in stage {name} at step {step} of {max_steps}; the weights of the last "
                             "finite step were not saved (trainer.on_nonfinite=skip drops such steps instead)") from None
        step_tokens = sum(batch_tokens(m) for m in micro)
        if counter is not None:
            meter.counted(counter.get_total_flops(), step_tokens)
        samples += sum(count(m) for m in micro) * ranks
        meter.step_done(sum(count(m) for m in micro) * ranks, step_tokens * ranks)
        if step == first and on_first_step is not None:
            on_first_step()
        logging = step % log_every == 0 or step == max_steps
        saving = checkpoint is not None and checkpoint_every and step % checkpoint_every == 0 and step < max_steps
        if not (defer and not (logging or saving)):
            read_losses()
        if logging:
            log({"stage": name, "step_in_stage": step,
                 "train/loss": sum(window) / len(window) if window else float("nan"),
                 "train/lr": lr_scheduler.get_last_lr()[0], "train/skipped_steps": skipped,
                 "throughput/samples_per_s": samples / (time.perf_counter() - start),
                 "throughput/tokens_per_s": meter.tokens / (time.perf_counter() - start)})
            window = []
        if saving:
            checkpoint(step, {"optimizer": optimizer.state_dict(), "scheduler": lr_scheduler.state_dict(),
                              "scaler": scaler.state_dict() if scaler else {}, "rng": rng_state(),
                              "data": batches.position(), "window": window, "skipped": skipped, "samples": samples,
                              "tokens": meter.tokens})
    read_losses()
    meter.sync()
    model.eval()
    return StageResult(name=name, steps=max_steps, final_loss=loss, seconds=time.perf_counter() - start,
                       samples=samples, **meter.result_fields())
