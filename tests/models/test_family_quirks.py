"""The quirks each family module exists for, checked against the real classes' behaviour."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from family_checks import generation_batch, train_batch
from method_fixtures import method_cfg
from tiny_builders import BLIP2_QUERIES, FAMILY_NAMES, model_cfg
from tiny_tokenizers import CAPTION, QUESTIONS, TARGETS, images
from transformers import DynamicCache, InstructBlipConfig

from ptpeft_cli.errors import UserError
from ptpeft_cli.methods import get_method
from ptpeft_cli.models import get_family
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.hf_text import IGNORE_INDEX


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
@pytest.mark.parametrize("name", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_vl_prefix_shifts_mrope_positions_uniformly(
    name: str, mode: str, load: Callable[..., LoadedModel]
) -> None:
    """Image tokens keep their 2-D grid positions relative to each other and to the text: all
    three M-RoPE components move by the prefix length L (input mode: the prefix takes 0..L-1)."""
    base = load(name)
    batch = train_batch(base)
    before = _rope_positions(base, batch)
    grid = before[1:, :, :]
    assert (grid[0] != grid[1]).any()  # the image really has 2-D positions here
    loaded = load(name)
    get_method("prefix").setup_stage(loaded, method_cfg("prefix", prefix__mode=mode), 0)
    after = _rope_positions(loaded, batch)
    length = 3  # method_cfg's prefix length
    if mode == "input":
        own = torch.arange(length).expand(3, before.shape[1], length)
        assert torch.equal(after[..., :length], own)
        after = after[..., length:]
    assert torch.equal(after, before + length)


@pytest.mark.parametrize(("name", "stock"), [("qwen2_vl", "Qwen2VLProcessor"), ("qwen2_5_vl", "Qwen2_5_VLProcessor")])
def test_qwen_vl_needs_no_torchvision(name: str, stock: str, load: Callable[..., LoadedModel]) -> None:
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here: the stock processor would load too")
    import transformers

    loaded = load(name)
    tokenizer, image_processor = loaded.processor.tokenizer, loaded.processor.image_processor
    with pytest.raises(Exception):  # noqa: B017 - the stock processor insists on a video processor
        getattr(transformers, stock)(image_processor=image_processor, tokenizer=tokenizer, video_processor=None)
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


def _layer0_masks(loaded: LoadedModel) -> tuple[list[torch.Tensor], Callable[[], None]]:
    """The attention masks PaliGemma hands its first Gemma layer, as booleans (True: visible)."""
    masks: list[torch.Tensor] = []
    attention = loaded.model.model.language_model.layers[0].self_attn

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        mask = kwargs["attention_mask"]
        masks.append(mask if mask.dtype == torch.bool else mask == 0)

    return masks, attention.register_forward_hook(hook, with_kwargs=True).remove


def test_paligemma_trains_on_the_processors_suffix(load: Callable[..., LoadedModel]) -> None:
    """Rows, labels and token types are PaliGemmaProcessor's own (`suffix` = target + <eos>):
    `token_type_ids` 1 exactly on the labelled suffix; a generation batch is all prefix (0)."""
    loaded = load("paligemma")
    processor = loaded.processor
    batch = train_batch(loaded)
    prompts = [loaded.family.prompt(text) for text in (CAPTION, QUESTIONS[0])]
    processor.tokenizer.padding_side = "right"
    reference = processor(images=images(2), text=["<image>" + p for p in prompts], suffix=TARGETS,
                          padding=True, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids", "labels", "pixel_values"):
        assert torch.equal(batch[key], reference[key]), key
    labelled = batch["labels"] != IGNORE_INDEX
    assert torch.equal(batch["token_type_ids"].bool(), labelled)
    bos = processor.tokenizer.bos_token_id
    for row, mask in zip(batch["input_ids"], batch["attention_mask"].bool(), strict=True):
        real = row[mask].tolist()
        image = real.index(bos)
        assert set(real[:image]) == {processor.image_token_id} and image == processor.image_seq_length
    generation = generation_batch(loaded)  # rows: QUESTIONS[1], QUESTIONS[0]
    assert not generation["token_type_ids"].any()
    asked = generation["input_ids"][1][generation["attention_mask"][1].bool()]
    assert torch.equal(batch["input_ids"][1][: len(asked)], asked)  # the prompt as training saw it


def test_paligemma_caps_the_suffix_and_keeps_eos(load: Callable[..., LoadedModel]) -> None:
    loaded = load("paligemma", max_length=3)
    batch = train_batch(loaded)
    labels = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX]
    assert len(labels) == 3 and labels[-1] == loaded.processor.tokenizer.eos_token_id


def test_paligemma_input_prefix_joins_the_bidirectional_block(load: Callable[..., LoadedModel]) -> None:
    """With an input prefix of L, the first image token sees the prefix and the whole image +
    prompt block, the prefix sees that block too, a target token only what precedes it."""
    loaded = load("paligemma")
    get_method("prefix").setup_stage(loaded, method_cfg("prefix"), 0)
    batch = train_batch(loaded)
    masks, remove = _layer0_masks(loaded)
    with torch.no_grad():
        loaded.model(**batch)
    remove()
    length, row = 3, 1  # method_cfg's prefix length; row 1: the longer one, no padding
    block = int((batch["token_type_ids"][row] == 0)[batch["attention_mask"][row].bool()].sum())
    visible = masks[0][row, 0].sum(-1)  # keys each query sees
    assert visible[0] == visible[length] == length + block  # prefix and first image token
    first_target = length + block
    assert visible[first_target] == first_target + 1  # causal


def test_paligemma_kv_prefix_would_lose_the_prefix_lm_block(load: Callable[..., LoadedModel]) -> None:
    """Why PaliGemma refuses prefix.mode=kv: generate gives PaliGemmaModel the image features
    (`mm_encoder_outputs`) instead of `pixel_values`, and the model applies the bidirectional
    image + prompt block only when it sees a first iteration (empty cache or pixels). With L
    prefix key/values cached, the first image token would see only the prefix and itself, in
    generation, while training (pixels given) reads the block both ways. If transformers changes
    this, this test fails: then allow kv in models/paligemma.py."""
    loaded = load("paligemma")
    stack = loaded.model.model
    batch = generation_batch(loaded)
    encoded = stack.get_image_features(batch["pixel_values"])
    text = stack.config.text_config
    masks, remove = _layer0_masks(loaded)
    length, row = 3, 1
    with torch.no_grad():
        for prefix in (0, length):
            cache = DynamicCache(config=stack.config)
            for index in range(text.num_hidden_layers if prefix else 0):  # generate's is empty
                state = torch.zeros(2, text.num_key_value_heads, prefix, text.head_dim)
                cache.update(state, state, index)
            ones = torch.ones(2, prefix, dtype=torch.long)
            stack(input_ids=batch["input_ids"], attention_mask=torch.cat([ones, batch["attention_mask"]], 1),
                  token_type_ids=torch.cat([0 * ones, batch["token_type_ids"]], 1), cache=cache,
                  mm_encoder_outputs={"image": encoded}, use_cache=True)
    remove()
    block = int(batch["attention_mask"][row].sum())  # a generation prompt is all prefix-LM block
    assert masks[0][row, 0, 0].sum() == block  # no cache: the first image token sees the block
    assert masks[1][row, 0, 0].sum() == length + 1  # cached prefix: only the prefix and itself


def test_instructblip_qformer_reads_the_instruction(load: Callable[..., LoadedModel]) -> None:
    """The instruction reaches the Q-Former (its BERT tokens, right-padded) in training batches,
    generation batches and `generate`, and changes what it passes to the language model."""
    loaded = load("instructblip")
    family, model = loaded.family, loaded.model
    prompts = [family.prompt(QUESTIONS[1]), family.prompt(QUESTIONS[0])]
    expected = loaded.processor.qformer_tokenizer(prompts, padding=True, return_tensors="pt")
    train, generation = train_batch(loaded), generation_batch(loaded)
    assert torch.equal(generation["qformer_input_ids"], expected["input_ids"])
    assert torch.equal(generation["qformer_attention_mask"], expected["attention_mask"])
    assert train["qformer_attention_mask"][:, 0].all()  # right-padded in training too
    seen: list[torch.Tensor] = []
    handle = model.qformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"]), with_kwargs=True)
    family.generate(loaded, generation, max_new_tokens=2)
    with torch.no_grad():
        logits = model(**train).logits
        other = model(**{**train, "qformer_input_ids": train["qformer_input_ids"].flip(0)}).logits
    handle.remove()
    assert torch.equal(seen[0], generation["qformer_input_ids"]) and torch.equal(seen[1], train["qformer_input_ids"])
    assert (logits - other).abs().max() > 1e-3


def test_instructblip_full_trains_the_qformer_instruction_path(load: Callable[..., LoadedModel]) -> None:
    loaded = load("instructblip")
    trained = {n for n, _ in loaded.model.named_parameters() if loaded.family.full_trainable(n, False)}
    assert {"qformer.embeddings.word_embeddings.weight", "qformer.embeddings.position_embeddings.weight",
            "query_tokens", "language_projection.weight", "qformer.encoder.layer.0.intermediate.dense.weight",
            "qformer.encoder.layer.0.crossattention.attention.query.weight"} <= trained


def test_instructblip_refuses_the_flan_t5_variant(tmp_path: Path) -> None:
    config = InstructBlipConfig(text_config={"model_type": "t5", "d_model": 32, "num_layers": 1, "num_heads": 4},
                                use_decoder_only_language_model=False)
    config.save_pretrained(tmp_path)
    with pytest.raises(UserError, match="encoder-decoder one \\(t5, Flan-T5\\), which is not supported"):
        get_family("instructblip").load(model_cfg("instructblip", tmp_path))
