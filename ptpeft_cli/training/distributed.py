"""Data-parallel training through accelerate, for a job launched by `torchrun` / `accelerate launch`
(or a multi-task SLURM job): one place that knows about ranks.

With one process nothing here wraps, syncs or gathers, and a run trains exactly as it always did.
With several, accelerate builds the process group (gloo on CPU, NCCL on CUDA) and wraps each
stage's model in DDP; ptpeft keeps its own loop, so what accelerate does for it is the wrapping,
`no_sync`, the collectives and clipping. `trainer.batch_size` stays the *global* batch: each rank
takes its slice of every batch (accelerate's BatchSamplerShard), so a run's hyper-parameters mean
the same on any number of processes.

`hardware.distributed=fsdp` shards full fine-tuning instead (torch's FSDP2 `fully_shard`, per
decoder layer, then the rest; accelerate's FSDP plugin needs GPUs, this runs and is tested on CPU
too): for models whose weights, gradients and optimizer state do not fit one device. After
training, the weights are gathered into a plain copy of the model on every rank for evaluation and
saving. Mid-stage checkpoints are DDP-only so far.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ptpeft_cli.errors import RunStopped, UserError
from ptpeft_cli.launch import launched_world_size


@dataclass
class Distributed:
    """The processes of one job. `accelerator` is None for a single process."""

    accelerator: Any = None
    strategy: str = "ddp"

    @classmethod
    def from_env(cls, device: torch.device, strategy: str, method: str = "", checkpoint_every: int = 0
                 ) -> Distributed:
        if launched_world_size() <= 1:
            return cls()
        if strategy == "fsdp" and method != "full":
            raise UserError(f"hardware.distributed=fsdp shards full fine-tuning (method=full); method={method} "
                            "trains few weights: use hardware.distributed=ddp")
        if strategy == "fsdp" and checkpoint_every:
            raise UserError("trainer.checkpoint_every with hardware.distributed=fsdp: mid-stage checkpoints are "
                            "written under ddp only so far; set trainer.checkpoint_every=0 (stage ends are kept)")
        from accelerate import Accelerator, DistributedDataParallelKwargs

        # Mixed precision stays ptpeft's own (Hardware.autocast); accelerate does not move models.
        return cls(Accelerator(cpu=device.type == "cpu", mixed_precision="no", device_placement=False,
                               kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)]),
                   strategy)

    @property
    def shards_weights(self) -> bool:
        return self.accelerator is not None and self.strategy == "fsdp"

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

    def prepare(self, model: nn.Module, layers: list[nn.Module]) -> nn.Module:
        """The model a stage trains: DDP-wrapped after the method set the stage up (PT-PEFT's stage 2
        adds LoRA, so every stage is wrapped anew; methods keep working on the unwrapped model), or
        sharded in place by FSDP, one unit per decoder layer (`layers`) plus one for the rest."""
        if not self.accelerator:
            return model
        if self.shards_weights:
            from torch.distributed.fsdp import fully_shard

            for layer in layers:
                fully_shard(layer)
            return fully_shard(model)
        self.accelerator.free_memory()  # forget the previous stage's wrapper
        return self.accelerator.prepare_model(model, device_placement=False)

    def gathered(self, sharded: nn.Module, fresh: nn.Module) -> nn.Module:
        """After an FSDP stage: `fresh` (an unsharded copy of the architecture) holding the trained
        weights in full on every rank, with the same parameters trainable; else `sharded` itself."""
        if not self.shards_weights:
            return sharded
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
        device = next(fresh.parameters()).device
        fresh.load_state_dict({name: tensor.to(device) for name, tensor in full.items()})
        trainable = {name for name, param in sharded.named_parameters() if param.requires_grad}
        for name, param in fresh.named_parameters():
            param.requires_grad_(name in trainable)
        return fresh

    @contextlib.contextmanager
    def no_sync(self, model: nn.Module, skip: bool) -> Iterator[None]:
        """Gradient accumulation: no all-reduce (reduce-scatter) for micro-batches before a step's last."""
        if not (self.accelerator and skip):
            yield
        elif self.shards_weights:
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)
        else:
            with self.accelerator.no_sync(model):
                yield

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

