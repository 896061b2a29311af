"""Tiny random real-transformers models (shared by the method tests) and minimal families for the method tests.

The families implement only what methods use (where the language model, its layers and the
adapter points are; LoRA targets; what `full` trains); tokenising and decoding belong to the
real families and are not needed here.
"""

from __future__ import annotations

from typing import Any

import torch
from tiny_builders import llama_text_config as shared_llama_config
from tiny_builders import scale_weights
from torch import nn
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    OPTConfig,
)

from ptpeft_cli.config import MethodConfig
from ptpeft_cli.models.base import LoadedModel, ModelFamily

VOCAB = 40
IMAGE_TOKEN = VOCAB - 1
PAD_TOKEN = 0
BLIP2_QUERIES = 4
IMAGE_SEQ = (64 // 8) ** 2  # CLIP 64 px / patch 8, CLS dropped by the "default" strategy


class _TestFamily(ModelFamily):
    """ModelFamily parts the methods use; the I/O parts are not exercised by method tests."""

    def load(self, model_cfg: Any) -> LoadedModel:
        raise NotImplementedError("test families are built by fixtures")

    def prompt(self, task: str, question: str | None = None) -> str:
        raise NotImplementedError("not used by method tests")

    def encode(self, loaded, images, prompts, targets=None):  # type: ignore[no-untyped-def]
        raise NotImplementedError("not used by method tests")

    def decode(self, loaded: LoadedModel, token_ids: torch.Tensor) -> list[str]:
        return [" ".join(str(int(t)) for t in row) for row in token_ids]

    def generate(
        self,
        loaded: LoadedModel,
        batch: dict[str, torch.Tensor],
        max_new_tokens: int = 24,
        num_beams: int = 1,
    ) -> list[str]:
        prompt_len = batch["input_ids"].shape[1]
        out = loaded.model.generate(
            **batch, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False
        )
        return self.decode(loaded, out[:, prompt_len:])

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return self.language_model(model).layers

    def adapter_points(self, layer: nn.Module) -> tuple[nn.Module, nn.Module]:
        return layer.self_attn, layer.mlp


class TinyLlavaTestFamily(_TestFamily):
    name = "test_llava"
    default_lora_targets = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
    default_lora_mlp_targets = r".*language_model.*\.(gate_proj|up_proj|down_proj)"

    def language_model(self, model: nn.Module) -> nn.Module:
        return (
            model.get_base_model().model.language_model
            if hasattr(model, "get_base_model")
            else model.model.language_model
        )

    def full_trainable(self, name: str, train_vision: bool) -> bool:
        return train_vision or "vision_tower" not in name


class LlamaTestFamily(_TestFamily):
    name = "test_llama"
    default_lora_targets = r"model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"
    default_lora_mlp_targets = r"model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)"

    def language_model(self, model: nn.Module) -> nn.Module:
        return model.get_base_model().model if hasattr(model, "get_base_model") else model.model

    def full_trainable(self, name: str, train_vision: bool) -> bool:
        return "embed_tokens" not in name


class Blip2OptTestFamily(_TestFamily):
    """BLIP-2 with OPT: a different decoder (learned positions from the mask, fc1/fc2 MLP)."""

    name = "test_blip2_opt"
    default_lora_targets = r".*language_model.*\.(q_proj|v_proj)"
    default_lora_mlp_targets = r".*language_model.*\.(fc1|fc2)"

    def language_model(self, model: nn.Module) -> nn.Module:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return base.language_model.model.decoder

    def adapter_points(self, layer: nn.Module) -> tuple[nn.Module, nn.Module]:
        return layer.self_attn, layer.fc2

    def full_trainable(self, name: str, train_vision: bool) -> bool:
        return "language_model" in name


def llama_text_config(kv_heads: int = 2) -> LlamaConfig:
    return shared_llama_config(VOCAB, PAD_TOKEN, 1, 2, kv_heads)


def build_llava(seed: int = 0) -> LlavaForConditionalGeneration:
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(
        image_size=64,
        patch_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=llama_text_config(),
        image_token_index=IMAGE_TOKEN,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    config.tie_word_embeddings = True
    return scale_weights(LlavaForConditionalGeneration(config))


def build_blip2(seed: int = 0) -> Blip2ForConditionalGeneration:
    torch.manual_seed(seed)
    config = Blip2Config(
        vision_config=Blip2VisionConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
        ),
        qformer_config=Blip2QFormerConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=64,
            encoder_hidden_size=32,
        ),
        text_config=OPTConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            ffn_dim=64,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=128,
            pad_token_id=PAD_TOKEN,
            bos_token_id=1,
            eos_token_id=2,
        ),
        num_query_tokens=BLIP2_QUERIES,
        image_token_index=IMAGE_TOKEN,
    )
    return scale_weights(Blip2ForConditionalGeneration(config))


def blip2_batch(seed: int = 1) -> dict[str, torch.Tensor]:
    """BLIP-2 in transformers 5 wants the query-token placeholders first; row 0 left-padded."""
    gen = torch.Generator().manual_seed(seed)
    text = torch.randint(3, IMAGE_TOKEN, (2, 5), generator=gen)
    ids = torch.cat([torch.full((2, BLIP2_QUERIES), IMAGE_TOKEN), text], dim=1)
    ids = torch.cat([torch.tensor([[PAD_TOKEN, PAD_TOKEN], [5, 6]]), ids], dim=1)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "pixel_values": torch.randn(2, 3, 32, 32, generator=gen),
    }


def build_llama(seed: int = 0, kv_heads: int = 4) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_text_config(kv_heads)).eval()


def method_cfg(name: str, **overrides: Any) -> MethodConfig:
    """A MethodConfig with small options; `prefix__length=3` style keys set nested fields."""
    cfg = MethodConfig(name=name, lr=1e-2)
    cfg.lora.dropout = 0.0
    cfg.prefix.length = 3
    cfg.prefix.encoder_hidden = 16
    cfg.adapter.bottleneck = 4
    for key, value in overrides.items():
        group, _, field_name = key.partition("__")
        if field_name:
            setattr(getattr(cfg, group), field_name, value)
        else:
            setattr(cfg, key, value)
    return cfg


def llava_batch(
    batch: int = 2, text_len: int = 5, seed: int = 1, left_pad: int = 0
) -> dict[str, torch.Tensor]:
    """Image placeholders + random text per row; row 0 is left-padded by `left_pad` tokens
    (the other rows get that many more text tokens instead)."""
    gen = torch.Generator().manual_seed(seed)
    rows, masks = [], []
    for row in range(batch):
        pad = left_pad if row == 0 else 0
        text = torch.randint(3, IMAGE_TOKEN, (text_len + left_pad - pad,), generator=gen)
        rows.append(
            torch.cat([torch.full((pad,), PAD_TOKEN), torch.full((IMAGE_SEQ,), IMAGE_TOKEN), text])
        )
        masks.append(
            torch.cat(
                [
                    torch.zeros(pad, dtype=torch.long),
                    torch.ones(IMAGE_SEQ + len(text), dtype=torch.long),
                ]
            )
        )
    pixels = torch.randn(batch, 3, 64, 64, generator=gen)
    return {
        "input_ids": torch.stack(rows),
        "attention_mask": torch.stack(masks),
        "pixel_values": pixels,
    }


def llama_batch(batch: int = 2, length: int = 6, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def with_labels(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Teacher-forcing labels: the text tokens; image placeholders and padding are -100."""
    labels = batch["input_ids"].clone()
    labels[(labels == IMAGE_TOKEN) | (batch["attention_mask"] == 0)] = -100
    return {**batch, "labels": labels}


def train_steps(
    model: nn.Module, batch: dict[str, torch.Tensor], steps: int = 3, lr: float = 1e-2
) -> list[float]:
    """A few AdamW steps over *all* parameters (the batch carries its labels): only parameters
    with grads can move."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def snapshot(model: nn.Module) -> dict[int, torch.Tensor]:
    """Copies of every parameter keyed by identity (survives peft renaming/wrapping)."""
    return {id(p): p.detach().clone() for p in model.parameters()}


def greedy_vs_teacher_forced(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    steps: int = 4,
    explicit_positions: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy `generate` step logits and the teacher-forced logits over the same tokens.

    Position ids in the forward follow generate's rule (cumsum of the mask), so left padding
    is handled the same way in both; models that derive positions from the mask (OPT) get none."""
    prompt_len = batch["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(
            **batch,
            max_new_tokens=steps,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            suppress_tokens=[IMAGE_TOKEN, 2],
            pad_token_id=PAD_TOKEN,
        )
        new = out.sequences[:, prompt_len:]
        ids = torch.cat([batch["input_ids"], new], dim=1)
        mask = torch.cat([batch["attention_mask"], torch.ones_like(new)], dim=1)
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        extra = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
        if explicit_positions:
            extra["position_ids"] = positions
        forward = model(input_ids=ids, attention_mask=mask, **extra).logits
    return torch.stack(out.logits, dim=1), forward[:, prompt_len - 1 : prompt_len - 1 + steps]
