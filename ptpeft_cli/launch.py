"""How this process was launched: one of several ranks (torchrun, accelerate launch, a SLURM job
with one task per GPU) or alone. Torch-free, so the CLI can ask before anything heavy loads; the
training side of data parallelism is training/distributed.py."""

from __future__ import annotations

import datetime as dt
import os
import secrets

from ptpeft_cli.config import LAUNCH_TIME_ENV, RUN_ID_ENV


def launched_world_size() -> int:
    """Processes of this launch as torchrun / accelerate / SLURM's env says, before any group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def export_slurm_environment() -> None:
    """A SLURM job with several tasks (hydra/launcher=slurm with tasks_per_node > 1) is its own
    launcher: submitit turns SLURM's variables into torch's (RANK, WORLD_SIZE, MASTER_ADDR...)."""
    if "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def agree_on_launch_identity() -> None:
    """All ranks of a launch must name the same run dir, but each composes its own Hydra config,
    whose `${now:}` differs by process. Rank 0 draws the time and the run id once and sends them
    to the others before Hydra builds any path. The process group made for that is the job's
    (accelerate reuses it): gloo for CPU tensors, NCCL for CUDA ones where there is a GPU."""
    if launched_world_size() <= 1 or os.environ.get(LAUNCH_TIME_ENV):
        return
    import torch
    import torch.distributed as torch_dist

    if not torch_dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch_dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
    identity = [dt.datetime.now().isoformat(), os.environ.get(RUN_ID_ENV) or secrets.token_hex(2)]
    torch_dist.broadcast_object_list(identity, src=0, device=torch.device("cpu"))
    os.environ[LAUNCH_TIME_ENV], os.environ[RUN_ID_ENV] = identity
