"""`model.dtype=auto` and the weights a method trains (methods/base.py `weights_dtype`): full
fine-tuning loads fp32 weights on a GPU too (bf16 rounds away AdamW steps of ~1e-5), the other
methods bf16; an explicit half dtype is kept with one warning; the planner counts the same bytes.
The GPU is mocked as tests/models/test_families.py does for `resolve_dtype`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tiny_builders import model_cfg
from transformers import AutoConfig

from ptpeft_cli.methods import METHODS, get_method
from ptpeft_cli.methods.base import model_config_for, weights_dtype
from ptpeft_cli.models import get_family
from ptpeft_cli.planning import sizes


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)


def test_only_full_trains_the_checkpoints_own_weights() -> None:
    assert {name for name in METHODS.names() if get_method(name).trains_base_weights} == {"full"}
    assert weights_dtype("auto", get_method("full")) == "fp32"
    assert [weights_dtype(d, get_method(m)) for d, m in [("auto", "lora"), ("bf16", "full"), ("fp32", "full")]] == \
        ["auto", "bf16", "fp32"]


def dtypes(name: str, path: Path, method: str, **overrides: object) -> set[torch.dtype]:
    cfg = model_cfg(name, path, **overrides)
    loaded = get_family(name).load(model_config_for(cfg, get_method(method)))
    return {p.dtype for p in loaded.model.parameters()}


def test_auto_on_a_gpu_loads_fp32_for_full_and_bf16_otherwise(
    gpu: None, tiny_checkpoint: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = tiny_checkpoint("llava15")
    with caplog.at_level(logging.WARNING, logger="ptpeft"):
        assert dtypes("llava15", path, "full") == {torch.float32}
        assert dtypes("llava15", path, "lora") == dtypes("llava15", path, "prefix") == {torch.bfloat16}
        assert dtypes("llava15", path, "lora", dtype="bf16") == {torch.bfloat16}
    assert not caplog.records
    cfg = model_cfg("llava15", path)
    assert model_config_for(cfg, get_method("full")).dtype == "fp32" and cfg.dtype == "auto"  # the run records auto


def test_explicit_bf16_for_full_is_kept_with_one_warning(
    gpu: None, tiny_checkpoint: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ptpeft"):
        assert dtypes("llava15", tiny_checkpoint("llava15"), "full", dtype="bf16") == {torch.bfloat16}
    [record] = caplog.records
    assert "model.dtype=bf16 with method=full" in record.getMessage() and "2^-8" in record.getMessage()


def test_on_the_cpu_auto_stays_fp32_for_every_method(tiny_checkpoint: Callable[[str], Path]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this test is about the CPU path")
    for method in ("full", "lora"):
        assert dtypes("llava15", tiny_checkpoint("llava15"), method) == {torch.float32}


def test_the_planner_counts_the_bytes_the_run_loads(gpu: None, tiny_checkpoint: Callable[[str], Path]) -> None:
    """Full under auto: 4 bytes per frozen weight, 4 + 4 + 8 per trained one, as loaded; LoRA over bf16."""
    path = tiny_checkpoint("llava15")
    assert sizes.gpu_weight_bytes("llava15", "auto", "full") == 4
    assert sizes.gpu_weight_bytes("llava15", "auto", "lora") == sizes.gpu_weight_bytes("llava15", "bf16", "full") == 2
    assert sizes.gpu_weight_bytes("tiny_llava", "auto", "lora") == 4  # the family pins fp32
    family = get_family("llava15")
    loaded = family.load(model_config_for(model_cfg("llava15", path), get_method("full")))
    full = sizes.method_config("full", {})
    get_method("full").setup_stage(loaded, full, 0)
    params = {id(p): p for p in loaded.model.parameters()}.values()
    trained = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    weights = sum(p.numel() * p.element_size() for p in params)
    with torch.device("meta"):
        meta = family.model_class(AutoConfig.from_pretrained(path))
    found = sizes.footprint("llava15", meta, full)
    assert found.weight_bytes == 4 and found.static_bytes == weights + trained + 2 * trained  # + grads + 2 moments
