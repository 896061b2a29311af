"""Bad options fail with a UserError that says what is allowed."""

from __future__ import annotations

import pytest
from method_fixtures import method_cfg

from ptpeft_cli.errors import UserError
from ptpeft_cli.methods import get_method
from ptpeft_cli.models.base import LoadedModel


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("lora", {"lora__r": 0}, "method.lora.r must be a positive integer"),
        ("lora", {"lora__r": -2}, "method.lora.r must be a positive integer"),
        ("lora", {"lora__dropout": 1.5}, r"method.lora.dropout must be in \[0, 1\)"),
        (
            "adapter",
            {"adapter__bottleneck": 0},
            "method.adapter.bottleneck must be a positive integer",
        ),
        ("adapter", {"adapter__activation": "swish2"}, "allowed: gelu, relu, silu"),
        ("prefix", {"prefix__length": 0}, "method.prefix.length must be a positive integer"),
        ("prefix", {"prefix__mode": "deep"}, "allowed: input, kv"),
        (
            "prefix",
            {"prefix__encoder_hidden": 0},
            "method.prefix.encoder_hidden must be a positive",
        ),
        ("pt_peft", {"stage2": "ia3"}, "method.stage2='ia3'; allowed: lora, adapter"),
        ("pt_peft", {"prefix__length": -1}, "method.prefix.length must be a positive integer"),
        (
            "pt_peft",
            {"stage2": "adapter", "adapter__bottleneck": 0},
            "bottleneck must be a positive",
        ),
        ("full", {"lr": 0.0}, "method.lr must be > 0"),
    ],
)
def test_bad_options_raise_user_error(
    name: str, overrides: dict, message: str, llava: LoadedModel
) -> None:
    cfg = method_cfg(name, **overrides)
    with pytest.raises(UserError, match=message):
        get_method(name).validate(cfg)
    if name != "full":  # setup checks too, before touching the model
        with pytest.raises(UserError, match=message):
            get_method(name).setup_stage(llava, cfg, 0)


def test_lora_targets_matching_nothing_list_the_linear_modules(llava: LoadedModel) -> None:
    cfg = method_cfg("lora", lora__target_modules=r".*language_model.*\.query")
    with pytest.raises(UserError, match="matches no Linear module") as info:
        get_method("lora").setup_stage(llava, cfg, 0)
    assert "model.language_model.layers.N.self_attn.q_proj" in str(info.value)
    assert "model.language_model.layers.N.mlp.down_proj" in str(info.value)
    assert "lm_head" in str(info.value)


def test_lora_targets_must_be_a_valid_regex(llava: LoadedModel) -> None:
    with pytest.raises(UserError, match="not a valid regex"):
        get_method("lora").setup_stage(llava, method_cfg("lora", lora__target_modules="(q_proj"), 0)


def test_unknown_method_lists_the_methods() -> None:
    with pytest.raises(UserError, match="choose one of: none, full, lora, adapter, prefix, pt_peft"):
        get_method("bitfit")
