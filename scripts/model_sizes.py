"""Trainable parameters per method and training memory for each family at its real size.

No weights are needed: each model is instantiated from its config on the `meta` device (shapes
only, no memory) and the real method code (`setup_stage`, peft's LoRA wrapping, our adapters
and prefix encoder) decides what trains, so the counts are exactly what `ptpeft train` reports
as `params/trainable`. The configs below are transcribed from the checkpoints' `config.json` on
the Hugging Face Hub (only the fields that set shapes).

Memory = weights + gradients + AdamW state, for `model.dtype=auto` on a GPU (bf16 weights):
frozen parameters 2 bytes; trained bf16 parameters (full, adapters, prefix) 2 + 2 (gradient)
+ 4 (two AdamW moments kept in the parameter's dtype) = 8 bytes; LoRA weights, which peft keeps
in fp32 over a bf16 model, 4 + 4 + 8 = 16 bytes. Activations (batch and sequence dependent)
and the CUDA context are not included.

    python scripts/model_sizes.py            # markdown tables for docs/models.md
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn
from transformers import (
    Blip2Config,
    BlipConfig,
    GitConfig,
    LlavaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    Qwen2VLConfig,
)

from ptpeft_cli.config import MethodConfig
from ptpeft_cli.errors import UserError
from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.prefix import build_prefix, check_prefix_mode, prefix_meta
from ptpeft_cli.models import get_family
from ptpeft_cli.models.base import LoadedModel

CONF = Path(__file__).resolve().parents[1] / "conf" / "method"
GIB = 1024**3

CLIP_L_336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
              "num_attention_heads": 16, "image_size": 336, "patch_size": 14, "projection_dim": 768}


def _llama(hidden: int, intermediate: int, layers: int, heads: int, kv: int, vocab: int) -> dict:
    return {"model_type": "llama", "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "vocab_size": vocab, "max_position_embeddings": 4096, "tie_word_embeddings": False}


def _qwen2_vl(hidden: int, intermediate: int, heads: int, kv: int, vocab: int, tie: bool) -> Qwen2VLConfig:
    return Qwen2VLConfig(
        text_config={"hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": 28,
                     "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
                     "tie_word_embeddings": tie,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24],
                                         "rope_theta": 1000000.0}},
        vision_config={"depth": 32, "embed_dim": 1280, "hidden_size": hidden, "num_heads": 16,
                       "mlp_ratio": 4, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        tie_word_embeddings=tie)


# checkpoint -> (family, config factory, model class or None for the family's own)
CHECKPOINTS: dict[str, tuple[str, Callable[[], Any], Any]] = {
    "llava-hf/llava-1.5-7b-hf": ("llava15", lambda: LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **CLIP_L_336},
        text_config=_llama(4096, 11008, 32, 32, 32, 32064), image_token_index=32000), None),
    "llava-hf/llava-1.5-13b-hf": ("llava15", lambda: LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **CLIP_L_336},
        text_config=_llama(5120, 13824, 40, 40, 40, 32064), image_token_index=32000), None),
    "Qwen/Qwen2-VL-2B-Instruct": ("qwen2_vl", lambda: _qwen2_vl(1536, 8960, 12, 2, 151936, True), None),
    "Qwen/Qwen2-VL-7B-Instruct": ("qwen2_vl", lambda: _qwen2_vl(3584, 18944, 28, 4, 152064, False), None),
    "Salesforce/blip2-opt-2.7b": ("blip2_opt", lambda: Blip2Config(
        vision_config={"hidden_size": 1408, "intermediate_size": 6144, "num_hidden_layers": 39,
                       "num_attention_heads": 16, "image_size": 224, "patch_size": 14, "qkv_bias": True},
        qformer_config={"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                        "intermediate_size": 3072, "encoder_hidden_size": 1408, "vocab_size": 30522},
        text_config={"model_type": "opt", "hidden_size": 2560, "ffn_dim": 10240, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "vocab_size": 50272, "word_embed_proj_dim": 2560,
                     "max_position_embeddings": 2048},
        num_query_tokens=32), None),
    "microsoft/git-base": ("git", lambda: GitConfig(
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "image_size": 224, "patch_size": 16},
        vocab_size=30522, hidden_size=768, num_hidden_layers=6, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=1024), None),
    "Salesforce/blip-image-captioning-base": ("blip", lambda: BlipConfig(
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "image_size": 384, "patch_size": 16},
        text_config={"vocab_size": 30524, "hidden_size": 768, "num_hidden_layers": 12,
                     "num_attention_heads": 12, "intermediate_size": 3072, "encoder_hidden_size": 768,
                     "max_position_embeddings": 512}), None),
    "llava-hf/llava-v1.6-mistral-7b-hf": ("hf", lambda: LlavaNextConfig(
        vision_config={"model_type": "clip_vision_model", **CLIP_L_336},
        text_config={**_llama(4096, 14336, 32, 32, 8, 32064), "model_type": "mistral"},
        image_token_index=32000), LlavaNextForConditionalGeneration),
}

# column -> (method config file, overrides)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "full": ("full", {}),
    "lora": ("lora", {}),
    "adapter": ("adapter", {}),
    "prefix input": ("prefix", {"prefix": {"mode": "input"}}),
    "prefix kv": ("prefix", {"prefix": {"mode": "kv"}}),
    "pt_peft (prefix+LoRA)": ("pt_peft", {}),
    "pt_adapter": ("pt_adapter", {}),
}


def method_config(name: str, overrides: dict[str, Any]) -> MethodConfig:
    """The shipped defaults of conf/method/<name>.yaml (pt_adapter extends pt_peft)."""
    cfg = OmegaConf.structured(MethodConfig)
    files = ["pt_peft", "pt_adapter"] if name == "pt_adapter" else [name]
    for file in files:
        values = OmegaConf.load(CONF / f"{file}.yaml")
        values.pop("defaults", None)
        cfg = OmegaConf.merge(cfg, values)
    return OmegaConf.to_object(OmegaConf.merge(cfg, overrides))


def count(family_name: str, base: nn.Module, cfg: MethodConfig) -> tuple[int, int] | None:
    """(trainable parameters, training bytes) of `cfg` on a copy of `base`; None if refused."""
    family = get_family(family_name)
    model = copy.deepcopy(base)
    family.configure(model)  # the generic family reads its LoRA targets from the model
    loaded = LoadedModel(model=model, processor=None, family=family)
    prefix_params = 0
    try:
        if cfg.name in ("prefix", "pt_peft"):  # built, not initialised (that would run the model)
            check_prefix_mode(loaded, cfg.prefix.mode)
            prefix_params = sum(p.numel() for p in build_prefix(loaded, prefix_meta(loaded, cfg)).parameters())
        if cfg.name == "full":  # FullMethod's rule; its tied-weight dedup reads storage, absent on meta
            for name, param in model.named_parameters():
                param.requires_grad_(family.full_trainable(name, bool(cfg.train_vision)))
        elif cfg.name != "prefix":
            get_method(cfg.stage2 if cfg.name == "pt_peft" else cfg.name).setup_stage(loaded, cfg, 0)
        else:
            loaded.model.requires_grad_(False)
    except UserError:
        return None
    params = {id(p): p for p in loaded.model.parameters()}  # meta tensors: compare identities
    lora = sum(p.numel() for n, p in loaded.model.named_parameters() if p.requires_grad and "lora_" in n)
    trained = sum(p.numel() for p in params.values() if p.requires_grad)
    frozen = sum(p.numel() for p in params.values() if not p.requires_grad)
    other = trained - lora + prefix_params
    return lora + other, 2 * frozen + 16 * lora + 8 * other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="checkpoint names to include")
    args = parser.parse_args()
    columns = list(METHODS)
    params_rows, memory_rows = [], []
    for checkpoint, (family_name, make_config, model_class) in CHECKPOINTS.items():
        if args.only and checkpoint not in args.only:
            continue
        cls = model_class or get_family(family_name).model_class
        with torch.device("meta"):
            base = cls(make_config())
        total = sum(p.numel() for p in {id(p): p for p in base.parameters()}.values())
        cells = [count(family_name, base, method_config(file, over)) for file, over in METHODS.values()]
        head = f"| {checkpoint} (`{family_name}`) | {total / 1e9:.2f} B |"
        params_rows.append(head + "".join(f" {_params(c, total)} |" for c in cells))
        memory_rows.append(f"| {checkpoint} | {2 * total / GIB:.1f} |"
                           + "".join(f" {'refused' if c is None else f'{c[1] / GIB:.1f}'} |" for c in cells))
    print("| checkpoint | parameters | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    print("\n".join(params_rows))
    print("\n| checkpoint | bf16 weights (GiB) | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    print("\n".join(memory_rows))


def _params(cell: tuple[int, int] | None, total: int) -> str:
    if cell is None:
        return "refused"
    value = cell[0]
    text = f"{value / 1e9:.2f} B" if value >= 1e8 else f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value / 1e3:.1f} K"
    return f"{text} ({100 * value / total:.3g}%)"


if __name__ == "__main__":
    main()
