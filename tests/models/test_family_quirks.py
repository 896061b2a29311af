"""The quirks each family module exists for, checked against the real classes' behaviour."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import pytest
import torch
from family_checks import generation_batch, train_batch
from method_fixtures import method_cfg
from tiny_builders import BLIP2_QUERIES, FAMILY_NAMES
from transformers import DynamicCache

from ptpeft_cli.methods import get_method
from ptpeft_cli.models.base import LoadedModel


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_generate_output_is_prompt_then_new_tokens(
    name: str, load: Callable[..., LoadedModel]
) -> None:
    """`new_tokens` cuts exactly what generate added (BLIP returns its prompt minus [SEP])."""
    loaded = load(name)
    batch = generation_batch(loaded)
    prompt = batch["input_ids"][:, :-1] if name == "blip" else batch["input_ids"]
    with torch.no_grad():
        output = loaded.model.generate(
            **{k: v.clone() for k, v in batch.items()},
            max_new_tokens=3,
            min_new_tokens=3,
            do_sample=False,
            **loaded.family.generation_kwargs(loaded),
        )
    real = batch["attention_mask"][:, : prompt.shape[1]].bool()
    assert torch.equal(output[:, : prompt.shape[1]][real], prompt[real])
    assert loaded.family.new_tokens(output, batch).shape[1] == 3


def _rope_positions(loaded: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The (3, batch, seq) M-RoPE positions the Qwen2-VL text model's rotary embedding gets."""
    seen: list[torch.Tensor] = []
    rotary = loaded.family.language_model(loaded.model).rotary_emb
    handle = rotary.register_forward_hook(lambda module, args, out: seen.append(args[1]))
    with torch.no_grad():
        loaded.model(**batch)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("mode", ["input", "kv"])
def test_qwen2_vl_prefix_shifts_mrope_positions_uniformly(
    mode: str, load: Callable[..., LoadedModel]
) -> None:
    """Image tokens keep their 2-D grid positions relative to each other and to the text: all
    three M-RoPE components move by the prefix length L (input mode: the prefix takes 0..L-1)."""
    base = load("qwen2_vl")
    batch = train_batch(base)
    before = _rope_positions(base, batch)
    grid = before[1:, :, :]
    assert (grid[0] != grid[1]).any()  # the image really has 2-D positions here
    loaded = load("qwen2_vl")
    get_method("prefix").setup_stage(loaded, method_cfg("prefix", prefix__mode=mode), 0)
    after = _rope_positions(loaded, batch)
    length = 3  # method_cfg's prefix length
    if mode == "input":
        own = torch.arange(length).expand(3, before.shape[1], length)
        assert torch.equal(after[..., :length], own)
        after = after[..., length:]
    assert torch.equal(after, before + length)


def test_qwen2_vl_needs_no_torchvision(load: Callable[..., LoadedModel]) -> None:
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here: the stock processor would load too")
    from transformers import Qwen2VLProcessor

    loaded = load("qwen2_vl")
    tokenizer, image_processor = loaded.processor.tokenizer, loaded.processor.image_processor
    with pytest.raises(Exception):  # noqa: B017 - the stock processor insists on a video processor
        Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=None)
    batch = train_batch(loaded)
    assert {"image_grid_thw", "mm_token_type_ids", "pixel_values"} <= set(batch)
    image_id = loaded.model.config.image_token_id
    assert torch.equal(batch["mm_token_type_ids"].bool(), batch["input_ids"] == image_id)


def test_blip2_puts_query_tokens_in_input_ids(load: Callable[..., LoadedModel]) -> None:
    loaded = load("blip2_opt")
    batch = train_batch(loaded)
    assert (
        (batch["input_ids"] == loaded.model.config.image_token_id).sum(-1) == BLIP2_QUERIES
    ).all()


def test_git_and_blip_prompts_start_with_their_bos(load: Callable[..., LoadedModel]) -> None:
    for name, token in (("git", "cls_token_id"), ("blip", "bos_token_id")):
        loaded = load(name)
        batch = train_batch(loaded)
        assert (batch["input_ids"][:, 0] == getattr(loaded.processor.tokenizer, token)).all()
    blip = load("blip")
    assert (
        generation_batch(blip)["input_ids"][:, -1] == blip.processor.tokenizer.sep_token_id
    ).all()


def test_git_kv_prefix_would_hide_image_tokens(load: Callable[..., LoadedModel]) -> None:
    """Why GIT refuses prefix.mode=kv: with L cached positions, GitModel's bidirectional image
    block is shifted by L, so the first image token no longer sees the last L image tokens. If
    transformers fixes this, this test fails: then allow kv in models/git.py."""
    loaded = load("git")
    stack = loaded.model.git
    images = stack.encoder.layer[0].attention.self.image_patch_tokens
    batch = train_batch(loaded)
    masks: list[torch.Tensor] = []
    layer = stack.encoder.layer[0].attention.self
    handle = layer.register_forward_hook(
        lambda m, a, kw, o: masks.append(a[1] if len(a) > 1 else kw["attention_mask"]),
        with_kwargs=True,
    )
    length, heads, head_dim = (
        3,
        stack.config.num_attention_heads,
        32 // stack.config.num_attention_heads,
    )
    with torch.no_grad():
        for prefix in (0, length):
            cache = DynamicCache(config=stack.config)
            for index in range(len(stack.encoder.layer)):
                cache.update(
                    torch.zeros(2, heads, prefix, head_dim),
                    torch.zeros(2, heads, prefix, head_dim),
                    index,
                )
            mask = batch["attention_mask"]
            if prefix:
                mask = torch.cat([torch.ones(2, prefix, dtype=mask.dtype), mask], dim=1)
            stack(
                input_ids=batch["input_ids"],
                attention_mask=mask,
                pixel_values=batch["pixel_values"],
                cache=cache,
            )
    handle.remove()
    visible = [int((m[0, 0, 0] > -1).sum()) for m in masks]  # keys the first image token sees
    assert visible[0] == images  # no prefix: the whole image block
    assert visible[1] < images + length  # with L cached positions: fewer than prefix + image
