"""`model.family=hf`: decoder-only image-text-to-text models in transformers' standard layout.

`AutoModelForImageTextToText` checkpoints whose language model is reached by `get_decoder()`,
has `.layers` of `self_attn` + `mlp` blocks, takes `inputs_embeds`, and whose processor expands
the image placeholder of a chat template (LLaVA-NeXT, SmolVLM/Idefics3, Mistral-3, ...).
Every other family subclasses `HFFamily` and changes only what its model does differently
(class attributes first, a method where a quirk needs code), so loading, dtype, gradient
checkpointing and the label-masking rules live in one place.
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

IGNORE_INDEX = -100
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


def pad_sequences(sequences: list[list[int]], value: int, left: bool) -> torch.Tensor:
    """Pad int sequences to the longest; `left` for generation batches."""
    width = max(len(seq) for seq in sequences)
    rows = [
        ([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s)))
        for s in sequences
    ]
    return torch.tensor(rows, dtype=torch.long)


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


class HFFamily(ModelFamily):
    """Generic family; subclasses override class attributes and the few methods below."""

    name = "hf"
    model_class: Any = AutoModelForImageTextToText
    # None: render the processor's chat template around `{instruction}`.
    prompt_template: str | None = None
    prepend_bos = False  # True where the tokenizer does not add BOS itself
    target_separator = " "  # between prompt and target, unless the prompt ends in whitespace
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

    # --- text ----------------------------------------------------------------------------
    def prompt(self, instruction: str) -> str:
        """`model.prompt_format`, else the family's `prompt_template`, else the processor's chat
        template (one image, one user turn) around the instruction."""
        template = self.prompt_format if self.prompt_format is not None else self.prompt_template
        if template is not None:
            return template.format(instruction=instruction)
        if self.processor is None:
            raise RuntimeError(f"family {self.name}: load() the model before building prompts")
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}
        ]
        if not getattr(self.processor, "chat_template", None):
            raise UserError(
                f"model family {self.name}: the processor of this checkpoint has no chat template; "
                "set model.prompt_format (e.g. model.prompt_format='{instruction}' for plain text) "
                "or use the checkpoint's family (model=paligemma, model=instructblip, ...)"
            )
        text = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        tokenizer = self.processor.tokenizer
        bos = tokenizer.bos_token
        adds_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
        return text[len(bos) :] if adds_bos and text.startswith(bos) else text  # not twice

    def separator(self, prompt: str) -> str:
        return "" if not prompt or prompt[-1].isspace() else self.target_separator

    def end_id(self, tokenizer: Any) -> int:
        """Token that ends a target (and generation)."""
        return int(tokenizer.eos_token_id)

    def target_ids(
        self, tokenizer: Any, prompts: list[str], targets: list[str], max_length: int
    ) -> list[list[int]]:
        """Target tokens as the tokenizer splits them *after the prompt* (so training sees the
        tokens generation produces), capped at `max_length` - 1, plus the end token."""
        joint = tokenizer(
            [p + self.separator(p) + t for p, t in zip(prompts, targets, strict=True)],
            add_special_tokens=False,
        )["input_ids"]
        alone = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        out = []
        for ids, prefix, prompt, target in zip(joint, alone, prompts, targets, strict=True):
            if ids[: len(prefix)] == prefix:
                ids = ids[len(prefix) :]
            else:  # the tokenizer merged across the boundary: tokenise the target alone
                ids = tokenizer(self.separator(prompt) + target, add_special_tokens=False)[
                    "input_ids"
                ]
            out.append(ids[: max(1, max_length - 1)] + [self.end_id(tokenizer)])
        return out

    def encode(
        self,
        loaded: LoadedModel,
        images: list[Any] | None,
        prompts: list[str],
        targets: list[str] | None = None,
        image_inputs: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Prompt rows (`prompt_rows`, or `cached_prompt_rows` on cached `image_inputs` for a
        family that implements them), then per row the target tokens and `labels` (-100 on
        prompt, image and padding positions); right-padded with targets, left-padded without."""
        tokenizer = loaded.processor.tokenizer
        if image_inputs is None:
            out, rows = self.prompt_rows(loaded, images, prompts)
        else:
            out, rows = self.cached_prompt_rows(loaded, image_inputs, prompts)
        if targets is None:
            suffix = self.generation_suffix(tokenizer)
            rows = {
                k: [r + (suffix if k == "input_ids" else [0] * len(suffix)) for r in v]
                for k, v in rows.items()
            }
            return self._pack(out, rows, tokenizer.pad_token_id, left=True)
        extra = self.target_ids(
            tokenizer, prompts, targets, int(loaded.extras.get("max_length", 64))
        )
        labels = [
            [IGNORE_INDEX] * len(p) + t for p, t in zip(rows["input_ids"], extra, strict=True)
        ]
        rows = {
            k: [
                r + (t if k == "input_ids" else [0] * len(t)) for r, t in zip(v, extra, strict=True)
            ]
            for k, v in rows.items()
        }
        out["labels"] = pad_sequences(labels, IGNORE_INDEX, left=False)
        return self._pack(out, rows, tokenizer.pad_token_id, left=False)

    def prompt_rows(
        self, loaded: LoadedModel, images: list[Any], prompts: list[str]
    ) -> tuple[dict[str, Any], dict[str, list[list[int]]]]:
        """(per-image inputs, unpadded per-token rows) for the prompts. The processor expands
        image placeholders; per-token extras (e.g. Qwen2-VL's `mm_token_type_ids`) become rows
        like `input_ids` (extended with 0 over targets), per-image ones pass through."""
        processor = loaded.processor
        tokenizer = processor.tokenizer
        texts = [(tokenizer.bos_token if self.prepend_bos else "") + p for p in prompts]
        tokenizer.padding_side = "right"
        batch = processor(images=images, text=texts, padding=True, return_tensors="pt")
        mask = batch["attention_mask"].bool()
        shape = batch["input_ids"].shape
        per_token = [
            k
            for k, v in batch.items()
            if k not in ("input_ids", "attention_mask") and torch.is_tensor(v) and v.shape == shape
        ]
        out = {
            k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", *per_token)
        }
        rows = {
            k: [r[m].tolist() for r, m in zip(batch[k], mask, strict=True)]
            for k in ("input_ids", *per_token)
        }
        return out, rows

    def cached_prompt_rows(
        self, loaded: LoadedModel, image_inputs: dict[str, torch.Tensor], prompts: list[str]
    ) -> tuple[dict[str, Any], dict[str, list[list[int]]]]:
        """`prompt_rows` on images processed earlier by `image_inputs`: the processor's own
        placeholder expansion (`replace_image_token`) on the cached tensors, then the tokenizer,
        each distinct prompt once. Valid for processors whose `__call__` is image processing +
        that expansion + tokenising (LLaVA's); a family enables it by implementing `image_inputs`."""
        processor = loaded.processor
        tokenizer = processor.tokenizer
        texts = [(tokenizer.bos_token if self.prepend_bos else "") + p for p in prompts]
        replacements = [processor.replace_image_token(image_inputs, i) for i in range(len(texts))]
        texts, _ = processor.get_text_with_replacements(texts, replacements)
        distinct = list(dict.fromkeys(texts))  # a captioning batch has one prompt
        ids_of = dict(zip(distinct, tokenizer(distinct)["input_ids"], strict=True))
        return dict(image_inputs), {"input_ids": [list(ids_of[text]) for text in texts]}

    def generation_suffix(self, tokenizer: Any) -> list[int]:
        """Tokens after a generation prompt that the model's `generate` strips again (BLIP)."""
        return []

    @staticmethod
    def _pack(
        out: dict[str, Any], rows: dict[str, list[list[int]]], pad_id: int, left: bool
    ) -> dict[str, Any]:
        """Pad the per-row lists (left for generation) and add the attention mask."""
        ids = rows.pop("input_ids")
        out["input_ids"] = pad_sequences(ids, pad_id, left)
        out["attention_mask"] = pad_sequences([[1] * len(s) for s in ids], 0, left)
        for key, values in rows.items():
            out[key] = pad_sequences(values, 0, left)
        return out

    def decode(self, loaded: LoadedModel, token_ids: torch.Tensor) -> list[str]:
        texts = loaded.processor.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]

    def generation_kwargs(self, loaded: LoadedModel) -> dict[str, Any]:
        tokenizer = loaded.processor.tokenizer
        return {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": self.end_id(tokenizer)}

    def new_tokens(self, output: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """`generate` returns prompt + new tokens for these models."""
        return output[:, inputs["input_ids"].shape[1] :]

    @torch.inference_mode()
    def generate(
        self,
        loaded: LoadedModel,
        batch: dict[str, torch.Tensor],
        max_new_tokens: int = 24,
        num_beams: int = 1,
    ) -> list[str]:
        """Greedy (num_beams=1) or beam search on a left-padded `encode(...)` batch."""
        model = loaded.model
        device = next(model.parameters()).device
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels" and torch.is_tensor(v)}
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            do_sample=False,
            **self.generation_kwargs(loaded),
        )
        return self.decode(loaded, self.new_tokens(output, inputs).cpu())

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

