"""The one card table (training/gpus.py): every run's MFU and `ptpeft plan` find a card by the name
torch reports, by the planner's names and by their usual spellings, the more specific card first."""

from __future__ import annotations

import pytest

from ptpeft_cli.errors import UserError
from ptpeft_cli.training.gpus import GPUS, find_gpu, gpu, peak_bf16_tflops

TORCH_NAMES = [  # torch.cuda.get_device_name() -> card, dense bf16 peak
    ("NVIDIA H100 80GB HBM3", "H100-SXM", 989.4), ("NVIDIA H100 PCIe", "H100-PCIe", 756.5),
    ("NVIDIA H100 NVL", "H100-NVL", 835.5), ("NVIDIA H200", "H200", 989.4), ("NVIDIA H200 NVL", "H200-NVL", 835.5),
    ("NVIDIA GH200 480GB", "GH200", 989.4), ("NVIDIA B200", "B200", 2250), ("NVIDIA GB200", "GB200", 2500),
    ("NVIDIA A100-SXM4-80GB", "A100-80GB", 312), ("NVIDIA A100 80GB PCIe", "A100-80GB", 312),
    ("NVIDIA A100-SXM4-40GB", "A100-40GB", 312), ("NVIDIA A100-PCIE-40GB", "A100-40GB", 312),
    ("NVIDIA L40S", "L40S", 362.05), ("NVIDIA L40", "L40", 181.05), ("NVIDIA RTX A6000", "RTX-A6000", 155),
    ("NVIDIA A10", "A10", 125), ("NVIDIA L4", "L4", 121), ("NVIDIA GeForce RTX 4090", "RTX-4090", 165),
]

PLANNER_SPELLINGS = [  # what hardware.gpu_name accepted before the tables were merged
    ("h100", "H100-SXM"), ("h100_sxm", "H100-SXM"), ("h100-80gb-hbm3", "H100-SXM"), ("h100-sxm5-80gb", "H100-SXM"),
    ("h100-pcie", "H100-PCIe"), ("h100-80gb-pcie", "H100-PCIe"), ("h200-sxm", "H200"), ("h200-141gb", "H200"),
    ("a100-sxm4-80gb", "A100-80GB"), ("a100-80gb-pcie", "A100-80GB"), ("a100-pcie-80gb", "A100-80GB"),
    ("a100", "A100-40GB"), ("a100-sxm4-40gb", "A100-40GB"), ("a100-pcie-40gb", "A100-40GB"), ("a6000", "RTX-A6000"),
    ("geforce-rtx-4090", "RTX-4090"), ("4090", "RTX-4090"), ("H200 NVL", "H200-NVL"), ("gh200", "GH200"),
]


@pytest.mark.parametrize(("name", "card", "peak"), TORCH_NAMES)
def test_the_name_torch_reports_finds_the_card_and_its_peak(name: str, card: str, peak: float) -> None:
    assert find_gpu(name).name == card
    assert peak_bf16_tflops(name) == peak
    assert gpu(name).name == card  # typed as torch reports it, it passes the typed-name check too


@pytest.mark.parametrize(("name", "card"), PLANNER_SPELLINGS + [(g.name, g.name) for g in GPUS])
def test_planner_names_and_spellings_find_their_card(name: str, card: str) -> None:
    assert gpu(name).name == card


@pytest.mark.parametrize("name", ["NVIDIA A10G", "Tesla V100-SXM2-16GB", "V100", "NVIDIA H800", "NVIDIA H20", ""])
def test_a_card_the_table_lacks_has_no_peak_and_a_clear_error(name: str) -> None:
    assert find_gpu(name) is None and peak_bf16_tflops(name) is None
    with pytest.raises(UserError, match=f"unknown hardware.gpu_name={name!r}; known: H100-NVL, H100-PCIe, H100-SXM, "):
        gpu(name)


@pytest.mark.parametrize(("name", "stray", "read_as"), [
    ("h100-pci", "pci", "H100-SXM"), ("a100-80gb-sxm9", "sxm9", "A100-80GB"), ("h200 nvl2", "nvl2", "H200"),
])
def test_a_typed_name_with_a_word_foreign_to_its_card_is_refused(name: str, stray: str, read_as: str) -> None:
    """A typo near a real name used to plan silently against the card its first word matched."""
    with pytest.raises(UserError, match=f"{stray!r} is no part of an {read_as} name \\(its own words, .*\\); known: "):
        gpu(name)


def test_memory_is_per_card() -> None:
    assert [find_gpu(n).memory_gib for n in ("NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB", "NVIDIA H200")] == \
        [40, 80, 141]
    assert len({g.name for g in GPUS}) == len(GPUS)
