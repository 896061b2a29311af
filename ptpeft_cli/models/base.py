"""The contract between a model family and the rest of ptpeft.

Everything that differs between LMM families (prompt format, where the language model lives,
which modules LoRA targets, where adapters go, what `full` trains) is answered here, so methods,
training and analysis never branch on a family name.
"""

from __future__ import annotations

import operator
import string
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from ptpeft_cli.errors import UserError

T = TypeVar("T")


def load_checkpoint(load: Callable[[], T], path: object) -> T:
    """Run a `from_pretrained` call; a missing, truncated or foreign checkpoint is the user's
    input, so it becomes one line naming the path and the cause instead of a traceback."""
    try:
        return load()
    except UserError:  # a family's own refusal of this checkpoint, already one line
        raise
    except Exception as error:  # noqa: BLE001 - transformers/safetensors raise many types here
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot load model.name_or_path={path}: {cause}") from None


def prompt_format(model_cfg: Any) -> str | None:
    """`model.prompt_format`, checked: `{instruction}` once and no other `{field}`."""
    text = getattr(model_cfg, "prompt_format", None)
    if text is None:
        return None
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(str(text)) if field is not None]
    except ValueError as error:
        fields = [f"<{error}>"]
    if fields != ["instruction"]:
        raise UserError(
            f"model.prompt_format={text!r} must contain {{instruction}} exactly once and no other "
            "{field} (write {{ and }} for literal braces)"
        )
    return str(text)


@dataclass
class LoadedModel:
    """A family's model and processor, loaded and ready for a method to wrap."""

    model: nn.Module
    processor: Any
    family: ModelFamily
    extras: dict[str, Any] = field(default_factory=dict)


class ModelFamily(ABC):
    """Family-specific knowledge. Subclasses live in `ptpeft_cli/models/<family>.py`."""

    name: str = "base"
    # Regex (peft `target_modules` string form) anchored to the language model's attention.
    default_lora_targets: str = ""
    # Regex for the language model's MLP linears, added when `method.lora_mlp=true`.
    default_lora_mlp_targets: str = ""

    @abstractmethod
    def load(self, model_cfg: Any) -> LoadedModel:
        """Load model + processor from `model_cfg.name_or_path` (or build the embedded default)."""

    @abstractmethod
    def prompt(self, instruction: str) -> str:
        """Text placed before the target: the task's instruction (question included) wrapped in
        the family's image placeholder and chat template. The Task owns the words, the family
        owns the format, so neither needs to know the other's names."""

    @abstractmethod
    def encode(
        self,
        loaded: LoadedModel,
        images: list[Any],
        prompts: list[str],
        targets: list[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Tokenise a batch. With targets: teacher-forcing inputs whose `labels` are -100 on
        prompt, image and padding positions. Without: left-padded prompts for generation.
        Always returns `input_ids`, `attention_mask`, `pixel_values` (+ `labels` with targets).

        A family that implements `image_inputs` also accepts `image_inputs=` (that method's
        output for the batch's images, stacked) and then ignores `images`: the pixels were
        processed once and cached. It is only ever passed to families that implement it."""

    # --- optional: cached image processing ----------------------------------------------------
    def image_inputs(self, loaded: LoadedModel, images: list[Any]) -> dict[str, torch.Tensor] | None:
        """Per-image processed tensors (e.g. `pixel_values`), each with one leading row per image,
        that `encode(..., image_inputs=...)` accepts in place of PIL images. Images are then
        decoded and processed once per run set (cached by `datasets.map`) instead of once per
        batch. The default None means: no caching, `encode` gets PIL images as before."""
        return None

    def image_inputs_fingerprint(self, loaded: LoadedModel) -> dict[str, Any]:
        """Everything that determines `image_inputs` besides the image bytes: the cache key, so
        another family, image size or normalisation re-processes instead of reusing stale pixels.
        The default covers a transformers image processor (its class and full config)."""
        import transformers

        processor = getattr(loaded.processor, "image_processor", loaded.processor)
        to_dict = getattr(processor, "to_dict", None)
        return {"family": self.name, "class": f"{type(processor).__module__}.{type(processor).__qualname__}",
                "config": to_dict() if to_dict else repr(processor), "transformers": transformers.__version__}

    @abstractmethod
    def decode(self, loaded: LoadedModel, token_ids: torch.Tensor) -> list[str]:
        """Generated token ids (new tokens only) -> cleaned strings."""

    @abstractmethod
    def generate(self, loaded: LoadedModel, batch: dict[str, torch.Tensor], max_new_tokens: int = 24,
                 num_beams: int = 1) -> list[str]:
        """Greedy or beam generation on an `encode(...)` batch without targets -> new text only."""

    @abstractmethod
    def language_model(self, model: nn.Module) -> nn.Module:
        """The decoder stack that takes `inputs_embeds` (e.g. LlavaModel.language_model)."""

    @abstractmethod
    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        """The language model's transformer layers, in order."""

    @abstractmethod
    def adapter_points(self, layer: nn.Module) -> tuple[nn.Module, nn.Module]:
        """(attention module, MLP module) of one decoder layer: adapters go after each."""

    @abstractmethod
    def full_trainable(self, name: str, train_vision: bool) -> bool:
        """Whether parameter `name` is trained by `method=full`."""

    # Prefix modes the family's decoder stack supports (methods/prefix.py refuses the others).
    prefix_modes: tuple[str, ...] = ("input", "kv")

    def prefix_cache(self, stack: nn.Module) -> Any:
        """A fresh cache for the kv prefix of a forward that brings none (training)."""
        from transformers import DynamicCache

        return DynamicCache(config=stack.config)

    def prefix_call(self, stack: nn.Module, kwargs: dict[str, Any], length: int, mode: str) -> dict[str, Any]:
        """The stack's keyword arguments on the call a prefix of `length` attaches to (a forward
        without cache, a generation's first step), before the generic rewrite (embeddings,
        mask, positions). A stack with per-token inputs besides the mask extends them here."""
        return kwargs

    # Dotted attribute path from the bare transformers model to the vision->text projector.
    projector_path: str | None = None

    def projector(self, model: nn.Module) -> nn.Module | None:
        """The vision->text projector (its output = image-token features), if the family has one."""
        if self.projector_path is None:
            return None
        while hasattr(model, "get_base_model"):
            model = model.get_base_model()
        return operator.attrgetter(self.projector_path)(model)

    def text_token_mask(self, loaded: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Positions holding text tokens (not image placeholders, not padding)."""
        image_token = getattr(loaded.model.config, "image_token_id", None)
        mask = batch["attention_mask"].bool()
        if image_token is not None:
            mask &= batch["input_ids"] != image_token
        return mask

    def text_config(self, model: nn.Module) -> Any:
        """The language model's config (heads, widths), also where the stack's config nests it."""
        return self.language_model(model).config.get_text_config()

    def hidden_size(self, model: nn.Module) -> int:
        return int(self.text_config(model).hidden_size)

    def num_layers(self, model: nn.Module) -> int:
        return len(self.decoder_layers(model))
