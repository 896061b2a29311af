"""Prefix tuning on any decoder stack that takes `inputs_embeds`, in two modes.

- `input`: L learned embeddings are placed before everything the language model receives
  (before image and text tokens).
- `kv` (Li & Liang, 2021): L learned key/value pairs per decoder layer.

Why hooks instead of peft: peft cannot mix prefix tuning with LoRA in one model, and in peft
0.21 + transformers 5 `generate()` silently drops the prefix (the KV cache moved to `cache=`).
A forward pre-hook on `family.language_model(model)` does it for both modes, for training and
for generation alike, because every call reaches the decoder stack:
- on a call without a (non-empty) cache it prepends the prefix embeddings (`input`) or fills a
  `DynamicCache` with the prefix key/values (`kv`); on later calls the prefix is already in the
  cache;
- it extends the 2-D attention mask by L ones and shifts given position ids by L (text starts at
  position L, as in peft, whose kv-prefix we reproduce exactly);
- a forward hook strips the L prefix positions from the outputs (`input` mode), so logits and
  labels keep their length and generation returns new tokens only. The prefix sits right before
  the stack's own input positions: a stack that puts image tokens in front itself (GIT) keeps
  them first.
Stacks called with positional arguments are bound to keywords; the family provides the cache
the kv prefix starts (`family.prefix_cache`), may rewrite the first call's own per-token inputs
(`family.prefix_call`: PaliGemma's `token_type_ids`) and may refuse a mode (`family.prefix_modes`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from ptpeft_cli.config import MethodConfig
from ptpeft_cli.errors import UserError
from ptpeft_cli.methods.base import (
    SingleStageMethod,
    freeze_all,
    load_into,
    load_tensors,
    require_positive,
    save_tensors,
)
from ptpeft_cli.models.base import LoadedModel

PREFIX_ATTR = "ptpeft_prefix"
WEIGHTS_FILE = "prefix.safetensors"
MODES = ("input", "kv")


class PrefixEncoder(nn.Module):
    """`length` learnable vectors, optionally reparameterised by an MLP (Li & Liang, sec. 4.3).

    `projection=True`: embedding (L, token_dim) -> Linear -> tanh -> Linear -> (L, out_dim).
    `projection=False`: the embedding *is* the output (L, out_dim). `merge_()` turns the first
    into the second once training is over. `residual=True` (input prefixes, where token_dim ==
    out_dim) outputs embedding + MLP(embedding) with the MLP's last layer zero-initialised: the
    prefix starts as the real word embeddings it is initialised with, and the MLP learns a
    correction (residual reparameterisation, Razdaibiedina et al. 2023), instead of starting from
    random MLP outputs."""

    def __init__(
        self, length: int, token_dim: int, out_dim: int, encoder_hidden: int, projection: bool,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.projection = projection
        self.residual = bool(residual and projection and token_dim == out_dim)
        self.embedding = nn.Embedding(length, token_dim if projection else out_dim)
        self.mlp = (
            nn.Sequential(
                nn.Linear(token_dim, encoder_hidden), nn.Tanh(), nn.Linear(encoder_hidden, out_dim)
            )
            if projection
            else None
        )
        if self.residual:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self) -> torch.Tensor:
        weight = self.embedding.weight
        if self.mlp is None:
            return weight
        return weight + self.mlp(weight) if self.residual else self.mlp(weight)

    @torch.no_grad()
    def merge_(self) -> None:
        """Replace embedding + MLP by the vectors they produce (same outputs, fewer parameters)."""
        if self.mlp is None:
            return
        merged = self().detach().clone()
        self.embedding = nn.Embedding(merged.shape[0], merged.shape[1]).to(
            merged.device, merged.dtype
        )
        self.embedding.weight.copy_(merged)
        self.mlp = None
        self.projection = self.residual = False


def as_keywords(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by parameter name (the hooks read and rewrite them by name)."""
    bound = inspect.signature(module.forward).bind_partial(*args, **kwargs)
    named: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            raise RuntimeError(f"prefix tuning cannot bind {type(module).__name__}'s *{name}")
        named.update(value if kind is inspect.Parameter.VAR_KEYWORD else {name: value})
    return named


class PrefixTuner(nn.Module):
    """The prefix parameters plus the hooks that feed them to the decoder stack."""

    def __init__(
        self,
        mode: str,
        length: int,
        hidden: int,
        num_layers: int,
        kv_heads: int,
        head_dim: int,
        encoder_hidden: int,
        projection: bool,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.mode, self.length = mode, length
        self.num_layers, self.kv_heads, self.head_dim = num_layers, kv_heads, head_dim
        out_dim = hidden if mode == "input" else num_layers * 2 * kv_heads * head_dim
        self.meta = {
            "mode": mode,
            "length": length,
            "hidden": hidden,
            "num_layers": num_layers,
            "kv_heads": kv_heads,
            "head_dim": head_dim,
            "encoder_hidden": encoder_hidden,
            "projection": projection,
            "residual": residual,
        }
        self.encoder = PrefixEncoder(length, hidden, out_dim, encoder_hidden, projection, residual)
        # Per call: the stack's own input length if a prefix was prepended, else None.
        self._prepended: list[int | None] = []
        self.cache_factory: Callable[[nn.Module], Any] = lambda stack: DynamicCache(
            config=stack.config
        )
        # The family's rewrite of the stack's arguments on the call that attaches the prefix.
        self.first_call: Callable[[nn.Module, dict[str, Any], int, str], dict[str, Any]] = (
            lambda stack, kwargs, length, mode: kwargs
        )

    # --- what the decoder stack sees -------------------------------------------------------
    def kv_states(self, batch: int, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (key, value), each (batch, kv_heads, L, head_dim). The flat vector layout is
        peft's: (L, layers*2, heads, head_dim), index 2i = key and 2i+1 = value of layer i."""
        flat = (
            self.encoder()
            .to(dtype)
            .view(self.length, self.num_layers * 2, self.kv_heads, self.head_dim)
        )
        states = flat.permute(1, 2, 0, 3).unsqueeze(1).expand(-1, batch, -1, -1, -1)
        return [(states[2 * i], states[2 * i + 1]) for i in range(self.num_layers)]

    def pre_hook(
        self, module: nn.Module, args: tuple, kwargs: dict[str, Any]
    ) -> tuple[tuple, dict[str, Any]]:
        if args:  # e.g. GitModel and BlipTextModel get `input_ids` positionally
            args, kwargs = (), as_keywords(module, args, kwargs)
        cache_key = (
            "past_key_values" if "past_key_values" in kwargs and "cache" not in kwargs else "cache"
        )
        cache = kwargs.get(cache_key)
        first = cache is None or cache.get_seq_length() == 0
        if first:
            kwargs = self.first_call(module, kwargs, self.length, self.mode)
        embeds = kwargs.get("inputs_embeds")
        own_length = (embeds if embeds is not None else kwargs["input_ids"]).shape[1]
        if first and self.mode == "input":
            if embeds is None:
                embeds = module.get_input_embeddings()(kwargs["input_ids"])
                kwargs["input_ids"] = None
            prefix = self.encoder().to(embeds.dtype).unsqueeze(0).expand(embeds.shape[0], -1, -1)
            kwargs["inputs_embeds"] = torch.cat([prefix, embeds], dim=1)
        elif first:
            self._refuse_checkpointing(module)
            batch = (embeds if embeds is not None else kwargs["input_ids"]).shape[0]
            dtype = embeds.dtype if embeds is not None else next(module.parameters()).dtype
            cache = cache if cache is not None else self.cache_factory(module)
            target = getattr(cache, "self_attention_cache", cache)  # BLIP: not cross-attention's
            for layer_idx, (key, value) in enumerate(self.kv_states(batch, dtype)):
                target.update(key, value, layer_idx)
            kwargs[cache_key] = cache
        if kwargs.get("attention_mask") is not None:
            kwargs["attention_mask"] = self._extend_mask(kwargs["attention_mask"])
        if kwargs.get("position_ids") is not None:
            kwargs["position_ids"] = self._shift_positions(
                kwargs["position_ids"], first and self.mode == "input"
            )
        self._prepended.append(own_length if first and self.mode == "input" else None)
        return args, kwargs

    def post_hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        own_length = self._prepended.pop()
        if own_length is None:
            return output

        def strip(hidden: torch.Tensor) -> torch.Tensor:
            start = hidden.shape[1] - own_length - self.length
            return torch.cat([hidden[:, :start], hidden[:, start + self.length :]], dim=1)

        if isinstance(output, tuple):
            return (strip(output[0]), *output[1:])
        output.last_hidden_state = strip(output.last_hidden_state)
        if getattr(output, "hidden_states", None) is not None:
            output.hidden_states = tuple(strip(h) for h in output.hidden_states)
        return output

    def _extend_mask(self, mask: torch.Tensor) -> torch.Tensor:
        if mask.dim() != 2:
            raise UserError(
                "prefix tuning needs a 2-D attention mask (batch, seq); got a pre-built 4-D mask"
            )
        ones = torch.ones(mask.shape[0], self.length, dtype=mask.dtype, device=mask.device)
        return torch.cat([ones, mask], dim=1)

    def _shift_positions(self, positions: torch.Tensor, prepend: bool) -> torch.Tensor:
        """Text starts L positions later. An input prefix takes the L positions before the row's
        first one (0..L-1; PaliGemma counts from 1, so 1..L there). (Without position ids the
        stack counts from the cache length or the mask, both of which include the prefix.)"""
        shifted = positions + self.length
        if not prepend:
            return shifted
        own = torch.arange(self.length, dtype=positions.dtype, device=positions.device)
        return torch.cat([positions.amin(dim=-1, keepdim=True) + own, shifted], dim=-1)

    @staticmethod
    def _refuse_checkpointing(module: nn.Module) -> None:
        """transformers drops the cache inside checkpointed layers (`cache=None`): the kv prefix
        would vanish silently while training, so refuse."""
        if (
            module.training
            and torch.is_grad_enabled()
            and any(getattr(sub, "gradient_checkpointing", False) for sub in module.modules())
        ):
            raise UserError(
                "prefix.mode=kv does not work with gradient checkpointing "
                "(model.gradient_checkpointing=true); use prefix.mode=input"
            )


def validate_prefix(cfg: MethodConfig) -> None:
    require_positive(cfg.prefix.length, "method.prefix.length")
    if cfg.prefix.mode not in MODES:
        raise UserError(f"method.prefix.mode={cfg.prefix.mode!r}; allowed: {', '.join(MODES)}")
    if cfg.prefix.projection:
        require_positive(cfg.prefix.encoder_hidden, "method.prefix.encoder_hidden")


def find_prefix(model: nn.Module) -> PrefixTuner | None:
    return next((module for module in model.modules() if isinstance(module, PrefixTuner)), None)


def build_prefix(loaded: LoadedModel, meta: dict[str, Any]) -> PrefixTuner:
    reference = next(loaded.family.language_model(loaded.model).parameters())
    return PrefixTuner(**meta).to(reference.device, reference.dtype)


def check_prefix_mode(loaded: LoadedModel, mode: str) -> None:
    """Refuse, before training, a mode the family cannot run or kv with gradient checkpointing."""
    family = loaded.family
    if mode not in family.prefix_modes:
        raise UserError(
            f"model family {family.name} does not support method.prefix.mode={mode} "
            f"(supported: {', '.join(family.prefix_modes) or 'none'})"
        )
    if mode == "kv" and any(
        getattr(m, "gradient_checkpointing", False) for m in loaded.model.modules()
    ):
        raise UserError(
            f"model family {family.name}: method.prefix.mode=kv does not work with "
            "model.gradient_checkpointing=true (checkpointed layers drop the prefix cache); "
            "use prefix.mode=input or turn checkpointing off"
        )


def attach_prefix(loaded: LoadedModel, tuner: PrefixTuner) -> PrefixTuner:
    """Register `tuner` on the model (so it trains, moves and saves with it) and hook the stack."""
    check_prefix_mode(loaded, tuner.mode)
    stack = loaded.family.language_model(loaded.model)
    tuner.cache_factory = loaded.family.prefix_cache
    tuner.first_call = loaded.family.prefix_call
    loaded.model.add_module(PREFIX_ATTR, tuner)
    stack.register_forward_pre_hook(tuner.pre_hook, with_kwargs=True)
    stack.register_forward_hook(tuner.post_hook, with_kwargs=True)
    return tuner


def prefix_meta(loaded: LoadedModel, cfg: MethodConfig) -> dict[str, Any]:
    """Geometry of the prefix for this model (kv heads and head size from the LM's config)."""
    family, model = loaded.family, loaded.model
    text_cfg = family.text_config(model)
    heads = int(text_cfg.num_attention_heads)
    hidden = family.hidden_size(model)
    return {
        "mode": cfg.prefix.mode,
        "length": int(cfg.prefix.length),
        "hidden": hidden,
        "num_layers": family.num_layers(model),
        "kv_heads": int(getattr(text_cfg, "num_key_value_heads", None) or heads),
        "head_dim": int(getattr(text_cfg, "head_dim", None) or hidden // heads),
        "encoder_hidden": int(cfg.prefix.encoder_hidden),
        "projection": bool(cfg.prefix.projection),
        "residual": bool(cfg.prefix.residual),
    }


@torch.no_grad()
def init_from_vocabulary(loaded: LoadedModel, tuner: PrefixTuner) -> None:
    """Start from real words (Li & Liang): embeddings of random vocabulary tokens; for an
    unprojected kv prefix, the key/values those tokens produce in the frozen model.
    Runs before the tuner is attached, so the stack runs without a prefix."""
    stack = loaded.family.language_model(loaded.model)
    table = stack.get_input_embeddings().weight
    tokens = torch.randint(0, table.shape[0], (tuner.length,), device=table.device)
    target = tuner.encoder.embedding.weight
    if tuner.encoder.projection or tuner.mode == "input":
        target.copy_(table[tokens].to(target.dtype))
        return
    cache = DynamicCache(config=stack.config)
    stack(input_ids=tokens.unsqueeze(0), cache=cache, use_cache=True)
    per_layer = [
        torch.stack([cache.layers[i].keys[0], cache.layers[i].values[0]])
        for i in range(tuner.num_layers)
    ]
    flat = torch.stack(per_layer).reshape(
        tuner.num_layers * 2, tuner.kv_heads, tuner.length, tuner.head_dim
    )
    target.copy_(flat.permute(2, 0, 1, 3).reshape(tuner.length, -1).to(target.dtype))


def apply_prefix(loaded: LoadedModel, cfg: MethodConfig) -> PrefixTuner:
    """Attach a new prefix initialised from the vocabulary, or keep the one already there."""
    validate_prefix(cfg)
    existing = find_prefix(loaded.model)
    if existing is not None:
        return existing
    check_prefix_mode(loaded, cfg.prefix.mode)
    tuner = build_prefix(loaded, prefix_meta(loaded, cfg))
    init_from_vocabulary(loaded, tuner)
    return attach_prefix(loaded, tuner)


def save_prefix(loaded: LoadedModel, out_dir: Path) -> None:
    tuner = find_prefix(loaded.model)
    if tuner is None:
        raise ValueError("no prefix to save: setup_stage/load was not called with a prefix")
    state = {
        name: param.detach().contiguous().cpu() for name, param in tuner.encoder.named_parameters()
    }
    meta = {**tuner.meta, "projection": tuner.encoder.projection, "residual": tuner.encoder.residual}  # False once merged
    save_tensors(state, Path(out_dir) / WEIGHTS_FILE, meta)


def load_prefix(loaded: LoadedModel, weights_dir: Path) -> PrefixTuner:
    tensors, meta = load_tensors(Path(weights_dir) / WEIGHTS_FILE)
    if find_prefix(loaded.model) is not None:
        raise ValueError("the model already carries a prefix")
    tuner = attach_prefix(loaded, build_prefix(loaded, meta))
    load_into(tuner.encoder, tensors, "prefix")
    return tuner


class PrefixMethod(SingleStageMethod):
    name = "prefix"

    def validate(self, cfg: MethodConfig) -> None:
        super().validate(cfg)
        validate_prefix(cfg)

    def apply(self, loaded: LoadedModel, cfg: MethodConfig) -> None:
        freeze_all(loaded.model)
        apply_prefix(loaded, cfg).requires_grad_(True)

    def save(self, loaded: LoadedModel, out_dir: Path) -> None:
        save_prefix(loaded, Path(out_dir))

    def load(self, loaded: LoadedModel, cfg: MethodConfig, weights_dir: Path) -> None:
        load_prefix(loaded, Path(weights_dir))
        freeze_all(loaded.model)  # loaded for evaluation; setup_stage re-enables training
