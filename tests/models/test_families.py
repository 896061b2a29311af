"""Every family on a tiny random checkpoint of its real class, loaded from disk: the contract
(load, prompt, encode, generate, structure) without the methods."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from family_checks import generation_batch, train_batch
from omegaconf import OmegaConf
from tiny_builders import FAMILY_NAMES, model_cfg
from tiny_tokenizers import TARGETS
from transformers import LlamaConfig

from ptpeft_cli.config import ModelConfig
from ptpeft_cli.errors import UserError
from ptpeft_cli.models import FAMILIES, get_family
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.hf import HFFamily, resolve_dtype
from ptpeft_cli.models.hf_text import IGNORE_INDEX

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
# Parameters `full` leaves frozen outside the vision encoder, because no gradient reaches them:
# InstructBLIP's last Q-Former layer's text FFN (only the query outputs leave the Q-Former).
UNREACHABLE = {"instructblip": [f"qformer.encoder.layer.1.{part}.{kind}" for part in
                                ("intermediate.dense", "output.dense", "output.LayerNorm")
                                for kind in ("weight", "bias")]}


def test_every_family_is_registered_and_has_a_yaml() -> None:
    assert set(FAMILY_NAMES) | {"tiny_llava"} == set(FAMILIES.names())
    for name in FAMILIES.names():
        schema = OmegaConf.structured(ModelConfig)
        cfg = OmegaConf.merge(schema, OmegaConf.load(CONF / f"{name}.yaml"))  # keys and types
        assert cfg.family == name and not cfg.trust_remote_code
        assert all("{question}" in text for task, text in cfg.instructions.items() if task == "vqa")


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_loads_from_disk_in_fp32_on_cpu(name: str, load: Callable[..., LoadedModel]) -> None:
    loaded = load(name)
    assert isinstance(loaded.family, HFFamily) and loaded.family.name == name
    assert not loaded.model.training
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    assert loaded.processor.tokenizer is not None


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_encode_labels_only_the_target(name: str, load: Callable[..., LoadedModel]) -> None:
    loaded = load(name)
    batch = train_batch(loaded)
    tokenizer = loaded.processor.tokenizer
    end = loaded.family.end_id(tokenizer)
    for row, target in enumerate(TARGETS):
        labelled = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX]
        assert labelled[-1] == end
        assert tokenizer.decode(labelled[:-1]).strip() == target  # exactly the target's tokens
        # labels sit on the last real positions of the row (prompt and image tokens before)
        real = batch["input_ids"][row][batch["attention_mask"][row].bool()]
        assert torch.equal(real[-len(labelled) :], labelled)
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    for token in loaded.family.image_token_ids(loaded):
        assert (batch["labels"][batch["input_ids"] == token] == IGNORE_INDEX).all()
    mask = batch["attention_mask"]
    assert (mask == 0).any() and (mask[:, 1:] <= mask[:, :-1]).all()  # one row right-padded
    assert ("token_type_ids" in batch) == (name == "paligemma")  # its prefix-LM mask reads them
    assert torch.isfinite(loaded.model(**batch).loss)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_generation_batch_is_left_padded_and_generate_returns_text(
    name: str, load: Callable[..., LoadedModel]
) -> None:
    loaded = load(name)
    batch = generation_batch(loaded)
    assert "labels" not in batch
    assert ("token_type_ids" in batch) == (name == "paligemma")
    mask = batch["attention_mask"]
    assert mask[0, 0] == 0 and (mask[:, 1:] >= mask[:, :-1]).all()  # the shorter row left-padded
    outputs = loaded.family.generate(loaded, batch, max_new_tokens=3)
    assert len(outputs) == 2 and all(isinstance(text, str) for text in outputs)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_text_token_mask_drops_image_and_padding(
    name: str, load: Callable[..., LoadedModel]
) -> None:
    loaded = load(name)
    batch = train_batch(loaded)
    mask = loaded.family.text_token_mask(loaded, batch)
    assert not mask[batch["attention_mask"] == 0].any()
    for token in loaded.family.image_token_ids(loaded):
        assert not mask[batch["input_ids"] == token].any()
    assert (mask & (batch["labels"] != IGNORE_INDEX)).sum() == (
        batch["labels"] != IGNORE_INDEX
    ).sum()


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_structure_lora_adapters_and_full(name: str, load: Callable[..., LoadedModel]) -> None:
    loaded = load(name)
    family, model = loaded.family, loaded.model
    stack = family.language_model(model)
    stack_path = next(n for n, m in model.named_modules() if m is stack)
    layers = family.decoder_layers(model)
    assert len(layers) == family.num_layers(model) == 2
    assert family.hidden_size(model) == 32
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    for regex, per_layer in (
        (family.default_lora_targets, 4),
        (family.default_lora_mlp_targets, 2),
    ):
        matched = [n for n in linears if re.fullmatch(regex, n)]
        assert len(matched) >= per_layer * len(layers), regex
        assert all(n.startswith(stack_path + ".") for n in matched), (
            matched
        )  # never the vision tower
    layer_modules = {id(m) for m in layers.modules()}
    for layer in layers:
        assert all(id(point) in layer_modules for point in family.adapter_points(layer))
    names = [n for n, _ in model.named_parameters()]
    trained = [n for n in names if family.full_trainable(n, False)]
    never = [n for n in names if not family.full_trainable(n, True)]
    assert never == UNREACHABLE.get(name, [])  # parameters no gradient reaches
    frozen = [n for n in names if n not in trained and n not in never]
    assert frozen and all(family.is_vision(n) for n in frozen)  # exactly the vision encoder
    assert any(n.startswith(stack_path) for n in trained)
    projector = family.projector(model)
    if projector is not None:
        assert all(
            family.full_trainable(n, False)
            for n, p in model.named_parameters()
            if any(p is q for q in projector.parameters())
        )


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_vl_trains_its_merger_under_full(name: str, load: Callable[..., LoadedModel]) -> None:
    loaded = load(name)
    names = [n for n, _ in loaded.model.named_parameters()]
    assert any("merger" in n and loaded.family.full_trainable(n, False) for n in names)
    assert not any("blocks" in n and loaded.family.full_trainable(n, False) for n in names)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_missing_checkpoint_is_a_user_error(name: str, tmp_path: Path) -> None:
    family = get_family(name)
    with pytest.raises(UserError, match=name):
        family.load(model_cfg(name, tmp_path / "absent"))
    with pytest.raises(UserError, match="name_or_path"):
        family.load(ModelConfig(family=name, name_or_path=None))


def test_trust_remote_code_is_off_unless_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[bool] = []

    class Recorder:
        @staticmethod
        def from_pretrained(path: str, **kwargs: object) -> None:
            seen.append(bool(kwargs["trust_remote_code"]))
            raise OSError("stop here")

    family = get_family("hf")
    monkeypatch.setattr(family, "model_class", Recorder)
    LlamaConfig(num_hidden_layers=1).save_pretrained(tmp_path)  # the generic family reads it first
    for option in (False, True):
        with pytest.raises(UserError):
            family.load(model_cfg("hf", tmp_path, trust_remote_code=option))
    assert seen == [False, True]


def test_dtype_auto_is_bf16_only_on_a_gpu(
    monkeypatch: pytest.MonkeyPatch, load: Callable[..., LoadedModel]
) -> None:
    assert resolve_dtype("auto") == torch.float32  # this machine: CPU
    assert resolve_dtype("bf16") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("auto") == torch.bfloat16
    assert resolve_dtype("auto", torch.float32) == torch.float32  # tiny_llava pins fp32
    with pytest.raises(UserError, match="model.dtype"):
        resolve_dtype("int8")
    monkeypatch.undo()
    assert {p.dtype for p in load("llava15", dtype="bf16").model.parameters()} == {torch.bfloat16}


def test_prompts_follow_each_family_format(load: Callable[..., LoadedModel]) -> None:
    instruction = "question: what color is the circle? answer:"
    expected = {
        "llava15": f"USER: <image>\n{instruction} ASSISTANT:",
        "blip2_opt": instruction,
        "paligemma": instruction,  # plain text: the processor adds <image>s, <bos> and "\n"
        "instructblip": instruction,
        "git": instruction,
        "blip": instruction,
        "hf": f"<|im_start|>User:<image>{instruction}<end_of_utterance>\nAssistant:",  # its chat template
    }
    for name, prompt in expected.items():
        assert load(name).family.prompt(instruction) == prompt
    for name in ("qwen2_vl", "qwen2_5_vl"):
        assert load(name).family.prompt(instruction).endswith(
            f"<|vision_start|><|image_pad|><|vision_end|>{instruction}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )


def test_generic_family_reads_lora_targets_from_the_model(load: Callable[..., LoadedModel]) -> None:
    family = load("hf").family
    assert (
        family.default_lora_targets
        == r".*model\.text_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
    )
    assert family.default_lora_mlp_targets.endswith(r"mlp\.(gate_proj|up_proj|down_proj)")


@pytest.mark.parametrize("name", ["paligemma", "instructblip", "qwen2_vl", "qwen2_5_vl"])
def test_generic_family_sends_a_checkpoint_to_its_own_family(
    name: str, tiny_checkpoint: Callable[[str], Path]
) -> None:
    """`model=hf` would train PaliGemma's target bidirectionally, could mistake InstructBLIP's
    Q-Former tokens for per-token rows and cannot build Qwen-VL's stock processor without
    torchvision: refused before the weights are read, naming the family that works."""
    with pytest.raises(UserError, match=f"model family hf: a checkpoint of model_type {name} needs model={name} "):
        get_family("hf").load(model_cfg("hf", tiny_checkpoint(name)))


def test_prompt_format_replaces_the_family_format(load: Callable[..., LoadedModel]) -> None:
    """`model.prompt_format` wins over a family's own format and a chat template alike; a
    format without exactly one `{instruction}` is refused."""
    assert load("paligemma", prompt_format="{instruction} now").family.prompt("caption en") == "caption en now"
    hf = load("hf", prompt_format="<image>Q: {instruction} A:")
    assert hf.family.prompt("what?") == "<image>Q: what? A:"
    batch = train_batch(hf)  # the processor still expands the image placeholder
    assert (batch["input_ids"] == hf.model.config.image_token_id).sum() > 2
    for bad in ("no field", "{instruction} {instruction}", "{question}", "{instruction"):
        with pytest.raises(UserError, match="model.prompt_format=.*must contain"):
            load("paligemma", prompt_format=bad)


def test_generic_family_refuses_a_non_standard_layout(load: Callable[..., LoadedModel]) -> None:
    git = load("git").model  # BERT-style layers: no self_attn / mlp
    with pytest.raises(UserError, match="not in the standard layout"):
        get_family("hf").configure(git)
