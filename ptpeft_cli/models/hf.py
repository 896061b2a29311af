"""`model.family=hf`: decoder-only image-text-to-text models in transformers' standard layout.

`AutoModelForImageTextToText` checkpoints whose language model is reached by `get_decoder()`,
has `.layers` of `self_attn` + `mlp` blocks, takes `inputs_embeds`, and whose processor expands
the image placeholder of a chat template (LLaVA-NeXT, SmolVLM/Idefics3, Mistral-3, ...).
Every other family subclasses `HFFamily` and changes only what its model does differently
(class attributes first, a method where a quirk needs code), so loading, dtype and gradient
checkpointing (here) and the prompt and label-masking rules (the text half, hf_text.py) are
written once.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from ptpeft_cli.errors import UserError
from ptpeft_cli.models.base import LoadedModel, ModelFamily, load_checkpoint, prompt_format
from ptpeft_cli.models.hf_text import HFText

_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
# Submodules holding a vision encoder, by the names transformers' LMMs use.
VISION_MODULES = ("vision_tower", "vision_model", "visual", "image_encoder", "vision_encoder")
PROJECTOR_NAMES = ("multi_modal_projector", "connector", "mm_projector", "merger")
# Checkpoints (by `model_type`) that the generic family would read wrongly, and their family.
OWN_FAMILY = {
    "paligemma": ("paligemma", "its target is a causal suffix marked by token_type_ids"),
    "instructblip": ("instructblip", "its Q-Former reads the instruction per image"),
    "qwen2_vl": ("qwen2_vl", "its stock processor needs torchvision for a video processor"),
    "qwen2_5_vl": ("qwen2_5_vl", "its stock processor needs torchvision for a video processor"),
}


def unwrap(model: nn.Module) -> nn.Module:
    """The bare transformers model under a peft wrapper (methods may wrap it)."""
    while hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def drop_input_grad_hooks(model: nn.Module) -> None:
    """Undo the hooks with which transformers' `gradient_checkpointing_enable` (and peft's
    wrapping of a checkpointed model) make every input embedding's output require grad, a vision
    tower's patch embedding included. Reentrant checkpointing needs them; the non-reentrant kind
    ptpeft uses does not, and with them a frozen vision tower gets a backward pass and its
    recompute for input gradients nothing reads (counted in training/throughput.py's test).
    The trained weights' gradients are unchanged."""
    with contextlib.suppress(AttributeError):  # older transformers: no hook registered, nothing to drop
        unwrap(model).disable_input_require_grads()




def resolve_dtype(name: str, gpu_dtype: torch.dtype = torch.bfloat16) -> torch.dtype:
    """`model.dtype`: explicit names as given; `auto` is `gpu_dtype` where CUDA can run it, fp32
    on CPU (bf16 matmuls on CPU are slow and lose precision for nothing)."""
    if name in _DTYPES:
        return _DTYPES[name]
    if name != "auto":
        raise UserError(f"model.dtype={name!r}; allowed: auto, {', '.join(sorted(_DTYPES))}")
    if torch.cuda.is_available() and (
        gpu_dtype != torch.bfloat16 or torch.cuda.is_bf16_supported()
    ):
        return gpu_dtype
    return torch.float32


class HFFamily(HFText, ModelFamily):
    """Generic family; subclasses override class attributes and the few methods below (and the
    text methods of `HFText`, models/hf_text.py)."""

    name = "hf"
    model_class: Any = AutoModelForImageTextToText
    gpu_dtype = torch.bfloat16
    vision_modules: tuple[str, ...] = VISION_MODULES
    # Parts inside a vision module that `full` still trains (a projector living there).
    trainable_in_vision: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.processor: Any = None  # set by load(); the chat template lives there
        self.prompt_format: str | None = None  # `model.prompt_format`, set by load()

    # --- loading -------------------------------------------------------------------------
    def checkpoint(self, model_cfg: Any) -> str:
        path = getattr(model_cfg, "name_or_path", None)
        if not path:
            raise UserError(
                f"model family {self.name} needs model.name_or_path (a hub id or a directory)"
            )
        return str(path)

    def load_model(self, path: str, dtype: torch.dtype, trust_remote_code: bool) -> nn.Module:
        if type(self) is HFFamily:  # the generic family, before the weights are read
            kind = getattr(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code), "model_type", "")
            if kind in OWN_FAMILY:
                family, why = OWN_FAMILY[kind]
                raise UserError(f"model family {self.name}: a checkpoint of model_type {kind} needs model={family} ({why})")
        return self.model_class.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code
        )

    def load_processor(self, path: str, trust_remote_code: bool) -> Any:
        return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)

    def load(self, model_cfg: Any) -> LoadedModel:
        path = self.checkpoint(model_cfg)
        dtype = resolve_dtype(str(getattr(model_cfg, "dtype", "auto")), self.gpu_dtype)
        remote = bool(getattr(model_cfg, "trust_remote_code", False))
        if remote:
            logging.getLogger("ptpeft").warning(
                "model.trust_remote_code=true: running Python code shipped with %s; only do this for code you trust", path)
        where = f"{path} (family {self.name})"
        model = load_checkpoint(lambda: self.load_model(path, dtype, remote), where)
        processor = load_checkpoint(lambda: self.load_processor(path, remote), where)
        model.eval()
        attention = getattr(model_cfg, "attn_implementation", None)
        if attention:
            self.set_attention(model, str(attention))
        self.prompt_format = prompt_format(model_cfg)
        if getattr(model_cfg, "gradient_checkpointing", False):
            self.enable_gradient_checkpointing(model)
        self.processor = processor
        self.configure(model)
        return LoadedModel(
            model=model,
            processor=processor,
            family=self,
            extras={"max_length": int(getattr(model_cfg, "max_length", 64)), "path": path},
        )

    def set_attention(self, model: nn.Module, name: str) -> None:
        """`model.attn_implementation`, set after loading so that every family's `load_model` gets
        it; transformers checks that the model supports it and that its kernels are installed."""
        try:
            model.set_attn_implementation(name)
        except Exception as error:  # noqa: BLE001 - ValueError, ImportError, ... all mean "not here"
            cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"model.attn_implementation={name!r} cannot be used with {type(model).__name__} "
                            f"here: {cause}") from None

    def enable_gradient_checkpointing(self, model: nn.Module) -> None:
        """Non-reentrant checkpointing: gradients reach prefixes/adapters/LoRA even when the
        embeddings are frozen (the reentrant variant needs inputs that require grad)."""
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise UserError(
                f"model family {self.name}: {type(model).__name__} does not support "
                "model.gradient_checkpointing=true"
            )
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        drop_input_grad_hooks(model)

    def configure(self, model: nn.Module) -> None:
        """Per-checkpoint defaults the class cannot know (the generic family's LoRA targets)."""
        if self.default_lora_targets:
            return
        try:
            stack = self.language_model(model)
            path = next(name for name, module in model.named_modules() if module is stack)
            attention, mlp = self.adapter_points(self.decoder_layers(model)[0])
        except (AttributeError, StopIteration, TypeError) as error:
            raise UserError(
                f"model family {self.name}: {type(model).__name__} is not in the standard layout "
                "(get_decoder().layers[i].self_attn / .mlp); it needs its own family module"
            ) from error
        layers = re.escape(f"{path}.layers") + r"\.\d+\."

        def linears(module: nn.Module) -> str:
            return "|".join(n for n, m in module.named_children() if isinstance(m, nn.Linear))

        self.default_lora_targets = rf".*{layers}self_attn\.({linears(attention)})"
        self.default_lora_mlp_targets = rf".*{layers}mlp\.({linears(mlp)})"


    # --- structure -----------------------------------------------------------------------
    def language_model(self, model: nn.Module) -> nn.Module:
        return unwrap(model).get_decoder()

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return self.language_model(model).layers

    def adapter_points(self, layer: nn.Module) -> tuple[nn.Module, nn.Module]:
        return layer.self_attn, layer.mlp

    def projector(self, model: nn.Module) -> nn.Module | None:
        """`projector_path`, else the first module named like a vision->text projector."""
        if self.projector_path is not None:
            return super().projector(model)
        for name, module in unwrap(model).named_modules():
            if name.split(".")[-1] in PROJECTOR_NAMES:
                return module
        return None

    def is_vision(self, name: str) -> bool:
        parts = name.split(".")
        return any(part in self.vision_modules for part in parts)

    def full_trainable(self, name: str, train_vision: bool) -> bool:
        """Everything but the vision encoder (a projector inside it stays trainable)."""
        if train_vision or not self.is_vision(name):
            return True
        return any(part in name.split(".") for part in self.trainable_in_vision)

    def image_token_ids(self, loaded: LoadedModel) -> list[int]:
        """Ids standing for image features in `input_ids` (excluded from the analysis rows)."""
        config = unwrap(loaded.model).config
        token = getattr(config, "image_token_id", None)
        if token is None:
            token = getattr(config, "image_token_index", None)
        return [] if token is None else [int(token)]

    def text_token_mask(self, loaded: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"].bool().clone()
        for token in self.image_token_ids(loaded):
            mask &= batch["input_ids"] != token
        return mask

