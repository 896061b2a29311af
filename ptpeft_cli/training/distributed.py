"""Data-parallel training through accelerate, for a job launched by `torchrun` / `accelerate launch`
(or a multi-task SLURM job): one place that knows about ranks.

With one process nothing here wraps, syncs or gathers, and a run trains exactly as it always did.
With several, accelerate builds the process group (gloo on CPU, NCCL on CUDA) and wraps each
stage's model in DDP; ptpeft keeps its own loop, so what accelerate does for it is the wrapping,
`no_sync`, the collectives and clipping. `trainer.batch_size` stays the *global* batch: each rank
takes its slice of every batch (accelerate's BatchSamplerShard), so a run's hyper-parameters mean
the same on any number of processes.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ptpeft_cli.errors import RunStopped
from ptpeft_cli.launch import launched_world_size


@dataclass
class Distributed:
    """The processes of one job. `accelerator` is None for a single process."""

    accelerator: Any = None

    @classmethod
    def from_env(cls, device: torch.device, strategy: str) -> Distributed:
        if launched_world_size() <= 1:
            return cls()
        from accelerate import Accelerator, DistributedDataParallelKwargs

        # Mixed precision stays ptpeft's own (Hardware.autocast); accelerate does not move models.
        return cls(Accelerator(cpu=device.type == "cpu", mixed_precision="no", device_placement=False,
                               kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)]))

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes if self.accelerator else 1

    @property
    def rank(self) -> int:
        return self.accelerator.process_index if self.accelerator else 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device | None:
        """The rank's device (cuda:LOCAL_RANK), or None to keep the resolved one."""
        return self.accelerator.device if self.accelerator else None

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model a stage trains: DDP-wrapped after the method set the stage up (PT-PEFT's stage 2
        adds LoRA, so every stage is wrapped anew). Methods keep working on the unwrapped model."""
        if not self.accelerator:
            return model
        self.accelerator.free_memory()  # forget the previous stage's wrapper
        return self.accelerator.prepare_model(model, device_placement=False)

    def no_sync(self, model: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
        """Gradient accumulation: no all-reduce for micro-batches before a step's last."""
        return self.accelerator.no_sync(model) if self.accelerator and skip else contextlib.nullcontext()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sums over ranks (one all-reduce for all values); unchanged for one process."""
        if not self.accelerator:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        return self.accelerator.reduce(tensor, reduction="sum").tolist()

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.accelerator:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def main_process_first(self) -> contextlib.AbstractContextManager:
        """Rank 0 first (it may write the synthetic world or the pixel cache), then the others."""
        return self.accelerator.main_process_first() if self.accelerator else contextlib.nullcontext()

    def wait(self) -> None:
        if self.accelerator:
            self.accelerator.wait_for_everyone()

    def clip_grad_norm_(self, parameters: list[nn.Parameter], max_norm: float) -> None:
        if self.accelerator:
            self.accelerator.clip_grad_norm_(parameters, max_norm)
        else:
            torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def check_in_sync(self, trainable: list[torch.Tensor], stage: str) -> str | None:
        """After a stage, a digest of the trainable weights that every rank must share: DDP keeps
        replicas equal only if every rank ran the same steps on the same parameters. Returns the
        digest (None for one process); diverged ranks stop the run."""
        if not self.accelerator:
            return None
        digest = hashlib.sha256()
        for tensor in trainable:
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
        digests = self.gather_objects(digest.hexdigest())
        if len(set(digests)) != 1:
            raise RunStopped(f"after stage {stage} the trainable weights differ between ranks "
                             f"({', '.join(d[:12] for d in digests)}); the run's numbers would be wrong")
        return digests[0]

    def shard_batches(self, n_examples: int, batch_size: int) -> list[int] | None:
        """Example indices of this rank's eval batches: whole batches dealt round-robin, so every
        batch is the one a single process would generate (same padding, same predictions)."""
        if not self.accelerator:
            return None
        starts = range(self.rank * batch_size, n_examples, batch_size * self.world_size)
        return [i for start in starts for i in range(start, min(start + batch_size, n_examples))]

