"""Known GPUs: memory and dense bf16 peak, what `ptpeft plan` sizes jobs against.

Vendor datasheet figures (dense, i.e. without 2:4 sparsity; memory as sold). A card missing here
is one line; `hardware.gpu_name` accepts the name, an alias, or the name torch reports
(`torch.cuda.get_device_name()`, e.g. "NVIDIA H100 80GB HBM3").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ptpeft_cli.errors import UserError


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float
    bf16_tflops: float  # dense peak
    aliases: tuple[str, ...] = ()


GPUS: tuple[Gpu, ...] = (
    Gpu("H100-SXM", 80, 989, ("h100", "h100-80gb-hbm3", "h100-sxm5-80gb")),
    Gpu("H100-PCIe", 80, 756, ("h100-pcie", "h100-80gb-pcie")),
    Gpu("H200", 141, 989, ("h200-sxm", "h200-141gb")),
    Gpu("B200", 180, 2250, ()),
    Gpu("A100-80GB", 80, 312, ("a100-sxm4-80gb", "a100-80gb-pcie", "a100-pcie-80gb")),
    Gpu("A100-40GB", 40, 312, ("a100", "a100-sxm4-40gb", "a100-pcie-40gb")),
    Gpu("L40S", 48, 362, ()),
    Gpu("L40", 48, 181, ()),
    Gpu("RTX-A6000", 48, 155, ("a6000",)),
    Gpu("A10", 24, 125, ()),
    Gpu("L4", 24, 121, ()),
    Gpu("RTX-4090", 24, 165, ("geforce-rtx-4090", "4090")),
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("nvidia", "")).strip("-")


def find_gpu(name: str) -> Gpu | None:
    wanted = _key(name)
    return next((gpu for gpu in GPUS if wanted in {_key(gpu.name), *map(_key, gpu.aliases)}), None)


def gpu(name: str) -> Gpu:
    """The card called `name`; a UserError lists the known ones."""
    found = find_gpu(name)
    if found is None:
        raise UserError(f"unknown hardware.gpu_name={name!r}; known: {', '.join(g.name for g in GPUS)} "
                        "(or the name torch reports, e.g. 'NVIDIA H100 80GB HBM3')")
    return found
