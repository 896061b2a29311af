"""Known GPUs: memory and dense bf16 peak, the one table behind every run's MFU (training/throughput.py)
and what `ptpeft plan` sizes jobs against.

Vendor datasheet figures (dense, i.e. without 2:4 sparsity; memory as sold). A card is found by its
name here, by the name torch reports (`torch.cuda.get_device_name()`, e.g. "NVIDIA H100 80GB HBM3")
or by a spelling of either (`h100`, `a100-sxm4-80gb`, `4090`): the name is lower-cased, "NVIDIA"
dropped and runs of other characters made one `-`, then matched against each card's `pattern` in
table order, the more specific card first (H100 NVL and PCIe before the plain H100, the 80 GB A100
before the 40 GB one, which an "A100" without a size is taken for). A card missing here is one line.
A name typed by the user (`gpu`) must also have no word foreign to the card it matched: `h100-pci` is an
error, not the H100-SXM its `h100` would match (a typo must not plan against the wrong peak).
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
    pattern: str  # searched in the normalised name (see the module docstring)


GPUS: tuple[Gpu, ...] = (
    Gpu("H100-NVL", 94, 835.5, r"\bh100-nvl\b"),
    Gpu("H100-PCIe", 80, 756.5, r"\bh100\b.*\bpcie\b"),
    Gpu("H100-SXM", 80, 989.4, r"\bh100\b"),  # torch: "NVIDIA H100 80GB HBM3"
    Gpu("H200-NVL", 141, 835.5, r"\bh200-nvl\b"),
    Gpu("H200", 141, 989.4, r"\bh200\b"),  # SXM
    Gpu("GH200", 96, 989.4, r"\bgh200\b"),  # torch: "NVIDIA GH200 480GB" (96 GB HBM3 + 480 GB CPU memory)
    Gpu("B200", 180, 2250, r"\bb200\b"),
    Gpu("GB200", 186, 2500, r"\bgb200\b"),
    Gpu("A100-80GB", 80, 312, r"\ba100\b.*\b80gb\b"),
    Gpu("A100-40GB", 40, 312, r"\ba100\b"),
    Gpu("L40S", 48, 362.05, r"\bl40s\b"),
    Gpu("L40", 48, 181.05, r"\bl40\b"),
    Gpu("RTX-A6000", 48, 155, r"\ba6000\b"),
    Gpu("A10", 24, 125, r"\ba10\b"),  # not the A10G (AWS), a card of its own
    Gpu("L4", 24, 121, r"\bl4\b"),
    Gpu("RTX-4090", 24, 165, r"\b4090\b"),
)


# Words a card's name may carry besides its own: form factor, memory type, brand, size.
_DESCRIPTORS = frozenset({"sxm", "sxm2", "sxm4", "sxm5", "pcie", "hbm2e", "hbm3", "hbm3e", "geforce", "rtx", "tesla"})


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("nvidia", "")).strip("-")


def find_gpu(name: str) -> Gpu | None:
    """The card `name` denotes (see the module docstring), or None for one the table lacks."""
    wanted = _key(name)
    return next((gpu for gpu in GPUS if re.search(gpu.pattern, wanted)), None)


def gpu(name: str) -> Gpu:
    """The card called `name`; a UserError lists the known ones."""
    found = find_gpu(name)
    known = f"known: {', '.join(g.name for g in GPUS)} (or the name torch reports, e.g. 'NVIDIA H100 80GB HBM3')"
    if found is None:
        raise UserError(f"unknown hardware.gpu_name={name!r}; {known}")
    allowed = set(_key(found.name).split("-")) | _DESCRIPTORS
    stray = [word for word in _key(name).split("-") if word not in allowed and not re.fullmatch(r"\d+gb", word)]
    if stray:
        raise UserError(f"unknown hardware.gpu_name={name!r}: {stray[0]!r} is no part of an {found.name} name "
                        f"(its own words, a form factor, memory type or size); {known}")
    return found


def peak_bf16_tflops(device_name: str) -> float | None:
    """The card's dense bf16 peak, or None for a card the table does not list."""
    found = find_gpu(device_name)
    return found.bf16_tflops if found else None
