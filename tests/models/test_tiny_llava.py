"""The tiny LMM's tokenizer, processor and family contract, on a small random model."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ptpeft_cli.errors import UserError
from ptpeft_cli.models import get_family
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.tiny_llava import IGNORE_INDEX, TinyLlavaFamily
from ptpeft_cli.synthetic import captions, text
from ptpeft_cli.synthetic.pretraining import corpus
from ptpeft_cli.synthetic.pretraining.build import (
    NUM_IMAGE_TOKENS,
    TinyShape,
    build_model,
    build_processor,
)
from ptpeft_cli.synthetic.text import CAPTION_PROMPT, VQA_PROMPT
from ptpeft_cli.synthetic.world import render, sample_scene

SMALL = TinyShape(vision_hidden=32, vision_layers=1, vision_heads=2, vision_intermediate=64,
                  text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64)


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    torch.manual_seed(0)
    processor = build_processor(text.vocabulary_words())
    model = build_model(SMALL, processor.tokenizer).eval()
    return LoadedModel(model=model, processor=processor, family=TinyLlavaFamily(),
                       extras={"max_length": 64})


@pytest.fixture(scope="module")
def scenes() -> list:
    rng = np.random.default_rng(3)
    return [sample_scene(rng, i) for i in range(4)]


def test_tokenizer_round_trips_every_world_text(loaded: LoadedModel) -> None:
    tokenizer = loaded.processor.tokenizer
    rng = np.random.default_rng(0)
    texts: list[str] = []
    for i in range(60):
        scene = sample_scene(rng, i)
        for instruction, response in text.pretrain_texts(scene, rng):
            texts += [instruction, response]
        texts += captions.coco_captions(scene, rng)
        for item in text.vqa_items(scene, rng):
            texts += [item.question, *item.answers]
    unk = tokenizer.unk_token_id
    for sample in set(texts):
        ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
        assert unk not in ids, sample
        assert tokenizer.decode(ids) == sample


def test_processor_expands_image_token(loaded: LoadedModel, scenes: list) -> None:
    processor = loaded.processor
    batch = processor(images=[render(scenes[0])], text=["<image> caption:"], return_tensors="pt")
    image_id = loaded.model.config.image_token_id
    assert int((batch["input_ids"] == image_id).sum()) == NUM_IMAGE_TOKENS == 64
    assert tuple(batch["pixel_values"].shape) == (1, 3, 64, 64)


def test_encode_masks_prompt_image_and_padding(loaded: LoadedModel, scenes: list) -> None:
    family = loaded.family
    images = [render(s) for s in scenes[:2]]
    prompts = [family.prompt(CAPTION_PROMPT), family.prompt(VQA_PROMPT.format(question="how many objects are there?"))]
    targets = ["a red circle and a blue square.", "2"]
    batch = family.encode(loaded, images, prompts, targets)
    tokenizer = loaded.processor.tokenizer
    for row, target in enumerate(targets):
        target_ids = tokenizer(" " + target, add_special_tokens=False)["input_ids"]
        labelled = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX].tolist()
        assert labelled == target_ids + [tokenizer.eos_token_id]
        assert batch["input_ids"][row, 0] == tokenizer.bos_token_id
    image_positions = batch["input_ids"] == loaded.model.config.image_token_id
    assert (batch["labels"][image_positions] == IGNORE_INDEX).all()
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    # the shorter (caption) row is right-padded
    assert batch["attention_mask"][0, -1] == 0 and batch["attention_mask"][1, -1] == 1
    loss = loaded.model(**batch).loss
    assert torch.isfinite(loss)


def test_generation_batch_is_left_padded_and_generate_returns_strings(
    loaded: LoadedModel, scenes: list
) -> None:
    family = loaded.family
    prompts = [family.prompt(CAPTION_PROMPT), family.prompt(VQA_PROMPT.format(question="what color is the circle?"))]
    batch = family.encode(loaded, [render(s) for s in scenes[:2]], prompts)
    assert "labels" not in batch
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].all()
    outputs = family.generate(loaded, batch, max_new_tokens=5)
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)
    assert all("<" not in o for o in outputs)  # special tokens stripped


def test_pretraining_ids_match_family_encode(loaded: LoadedModel) -> None:
    """Pre-training builds ids without the processor; zero-shot use goes through encode."""
    family = loaded.family
    tokenizer = loaded.processor.tokenizer
    data = corpus.generate_corpus(n_scenes=3, seed=0, draws=1, workers=1)
    pairs = corpus.build_pairs(data.records, tokenizer, family)
    assert len(pairs) == len(data.records) and any(p.is_caption for p in pairs)
    pixels = corpus.normalise(data.images, loaded.processor.image_processor.image_mean,
                              loaded.processor.image_processor.image_std)
    for pair, (scene_index, instruction, response) in list(zip(pairs, data.records, strict=True))[:8]:
        teacher = corpus.collate([pair], pixels, tokenizer.pad_token_id)
        via_family = family.encode(
            loaded, [render(data.scenes[scene_index])],
            [corpus.prompt_text(family, instruction)],
            [response])
        assert teacher["input_ids"].tolist() == via_family["input_ids"].tolist()
        assert teacher["labels"].tolist() == via_family["labels"].tolist()
        assert torch.allclose(teacher["pixel_values"], via_family["pixel_values"], atol=1e-5)


def test_corpus_does_not_depend_on_worker_count() -> None:
    one = corpus.generate_corpus(n_scenes=corpus.CHUNK + 3, seed=5, draws=1, workers=1)
    two = corpus.generate_corpus(n_scenes=corpus.CHUNK + 3, seed=5, draws=1, workers=2)
    assert torch.equal(one.images, two.images) and one.records == two.records
    assert [s.image_id for s in one.scenes] == list(range(corpus.CHUNK + 3))


def test_structure_hooks(loaded: LoadedModel) -> None:
    family = loaded.family
    model = loaded.model
    layers = family.decoder_layers(model)
    assert len(layers) == SMALL.text_layers == family.num_layers(model)
    attention, mlp = family.adapter_points(layers[0])
    assert hasattr(attention, "q_proj") and hasattr(mlp, "down_proj")
    assert family.hidden_size(model) == SMALL.text_hidden
    assert family.projector(model) is model.model.multi_modal_projector
    names = [n for n, _ in model.named_modules()]
    lora = [n for n in names if re.fullmatch(family.default_lora_targets, n)]
    mlp_targets = [n for n in names if re.fullmatch(family.default_lora_mlp_targets, n)]
    assert len(lora) == 4 * SMALL.text_layers and all("language_model" in n for n in lora)
    assert len(mlp_targets) == 3 * SMALL.text_layers
    trained = {n for n, _ in model.named_parameters() if family.full_trainable(n, False)}
    assert not any("vision_tower" in n for n in trained)
    assert any("multi_modal_projector" in n for n in trained)
    assert any("lm_head" in n for n in trained)
    assert all(family.full_trainable(n, True) for n, _ in model.named_parameters())


def test_registry() -> None:
    assert isinstance(get_family("tiny_llava"), TinyLlavaFamily)
    with pytest.raises(UserError, match="tiny_llava"):
        get_family("nope")


def test_load_missing_path_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError):
        TinyLlavaFamily().load(SimpleNamespace(name_or_path=str(tmp_path / "absent"),
                                               dtype="auto", max_length=64))
