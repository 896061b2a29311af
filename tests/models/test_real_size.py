"""The shipped real-checkpoint configs (models/real_configs/): each names a registered family and
builds its architecture on the meta device with the parameter count the hub states."""

from __future__ import annotations

import pytest

from ptpeft_cli.errors import UserError
from ptpeft_cli.models import FAMILIES
from ptpeft_cli.models.real_size import build_model, real_checkpoint, real_checkpoints

# Parameter counts (tied weights once) of the real checkpoints, in billions, as published.
PUBLISHED_BILLIONS = {"llava-hf/llava-1.5-7b-hf": 7.06, "Qwen/Qwen2-VL-2B-Instruct": 2.21,
                      "Qwen/Qwen2-VL-7B-Instruct": 8.29, "Salesforce/blip2-opt-2.7b": 3.74,
                      "google/paligemma-3b-pt-224": 2.92, "Salesforce/instructblip-vicuna-7b": 7.91,
                      "Qwen/Qwen2.5-VL-3B-Instruct": 3.75, "Qwen/Qwen2.5-VL-7B-Instruct": 8.29}


@pytest.mark.parametrize("hub_id", sorted(real_checkpoints()))
def test_shipped_config_builds_on_meta_for_a_registered_family(hub_id: str) -> None:
    checkpoint = real_checkpoint(hub_id)
    assert checkpoint.family in FAMILIES
    model = build_model(hub_id)
    assert all(p.is_meta for p in model.parameters())
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    if hub_id in PUBLISHED_BILLIONS:
        assert round(total / 1e9, 2) == PUBLISHED_BILLIONS[hub_id]


def test_unknown_checkpoint_is_one_line_listing_the_known() -> None:
    with pytest.raises(UserError, match="no shipped config for checkpoint 'x/y'; known: .*llava-1.5-7b-hf"):
        real_checkpoint("x/y")
