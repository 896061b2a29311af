"""What every fine-tuning method provides to the training loop, plus shared helpers.

A method turns a `LoadedModel` into a trainable one in place (one call per stage), saves only
the weights it trained, and re-applies itself from those weights for evaluation. Methods are
stateless: everything they add lives on the model (submodules, hooks, a peft wrapper), so a
method object can be created anywhere, e.g. in an eval process that never trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file
from torch import nn

from ptpeft_cli import storage
from ptpeft_cli.config import MethodConfig
from ptpeft_cli.errors import UserError
from ptpeft_cli.models.base import LoadedModel

FINGERPRINT_VERSION = 1


@dataclass
class StagePlan:
    """One training stage: its name (for logs and run dirs), learning rate and length."""

    name: str
    lr: float
    max_steps: int


class Method(ABC):
    """A fine-tuning method. Stages are numbered from 0 in the order `stages()` lists them."""

    name: str = "base"
    # True for a method whose stages update the checkpoint's own weights (full fine-tuning), not only
    # modules it adds: `model.dtype=auto` then loads them in fp32 (`weights_dtype`).
    trains_base_weights: bool = False

    def stages(self, cfg: MethodConfig, default_steps: int) -> list[StagePlan]:
        """Single-stage default: the method's lr for the trainer's number of steps."""
        return [StagePlan(name=self.name, lr=float(cfg.lr), max_steps=int(default_steps))]

    @abstractmethod
    def setup_stage(self, loaded: LoadedModel, cfg: MethodConfig, stage: int) -> None:
        """Make `loaded.model` trainable for `stage`: exactly that stage's parameters get
        `requires_grad=True`. May replace `loaded.model` (peft wrap): re-read it afterwards."""

    @abstractmethod
    def save(self, loaded: LoadedModel, out_dir: Path) -> None:
        """Write the trained weights (only those) to `out_dir`."""

    @abstractmethod
    def load(self, loaded: LoadedModel, cfg: MethodConfig, weights_dir: Path) -> None:
        """Re-apply the method to a freshly loaded base model and load the trained weights."""

    def validate(self, cfg: MethodConfig) -> None:
        """Raise `UserError` for option values this method cannot use (checked before loading).
        Subclasses extend it; the learning rate is common to all."""
        if not float(cfg.lr) > 0:
            raise UserError(f"method.lr must be > 0, got {cfg.lr!r}")

    def stage_fingerprint(
        self,
        model_id: str,
        data_id: str,
        cfg: MethodConfig,
        seed: int,
        schedule: Mapping[str, Any],
        stage: int = 0,
    ) -> str:
        """Hash of everything that determines the weights after `stage` (for stage caches).

        The default covers the whole method config; multi-stage methods narrow it so that a
        stage is shared by runs that differ only in later stages."""
        return fingerprint(
            method=self.name,
            stage=stage,
            model_id=model_id,
            data_id=data_id,
            method_cfg=to_plain(cfg),
            seed=seed,
            schedule=to_plain(schedule),
        )


def weights_dtype(model_dtype: str, method: Method) -> str:
    """`model.dtype` for `method`'s run: `auto` becomes `fp32` when the method trains the checkpoint's
    own weights. bf16 keeps 8 significant bits, so an AdamW step of lr 1e-5..2e-5 (a relative change
    far below 2^-8 for most weights) rounds away; fp32 weights under the run's bf16 autocast are
    ordinary mixed precision (matmuls still in bf16). Otherwise `auto` is the family's choice
    (bf16 on a GPU, fp32 on the CPU); an explicit dtype is kept."""
    return "fp32" if model_dtype == "auto" and method.trains_base_weights else model_dtype


def model_config_for(model_cfg: Any, method: Method, warn: bool = True) -> Any:
    """`model_cfg` to load the base model with for training `method` (`weights_dtype`): a copy when
    the dtype changes, so the run's recorded config keeps the user's `auto`. `warn`: one line when
    an explicit half dtype holds weights the method trains."""
    dtype = weights_dtype(str(model_cfg.dtype), method)
    if warn and method.trains_base_weights and dtype in ("bf16", "fp16"):
        logging.getLogger("ptpeft").warning(
            "model.dtype=%s with method=%s: AdamW updates below %s's resolution (2^-%d relative) are lost; "
            "model.dtype=auto trains fp32 weights under bf16 autocast", dtype, method.name, dtype,
            8 if dtype == "bf16" else 11)
    return model_cfg if dtype == model_cfg.dtype else OmegaConf.merge(model_cfg, {"dtype": dtype})


class SingleStageMethod(Method):
    """A method with one stage (everything but PT-PEFT): `apply` makes the model trainable."""

    def setup_stage(self, loaded: LoadedModel, cfg: MethodConfig, stage: int) -> None:
        if stage != 0:
            raise ValueError(f"method {self.name} has one stage, got stage {stage}")
        self.validate(cfg)
        self.apply(loaded, cfg)

    @abstractmethod
    def apply(self, loaded: LoadedModel, cfg: MethodConfig) -> None:
        """Add the method's modules (if any) and set exactly its parameters trainable."""


def fingerprint(**parts: Any) -> str:
    """sha256 of a canonical JSON (sorted keys, no whitespace) of `parts`."""
    payload = {"fingerprint_version": FINGERPRINT_VERSION, **parts}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def to_plain(obj: Any) -> Any:
    """Dataclasses, OmegaConf nodes and mappings -> JSON-able dicts/lists (for hashing)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "_metadata") and hasattr(obj, "_get_node"):  # an OmegaConf container
        from omegaconf import OmegaConf

        return to_plain(OmegaConf.to_container(obj, resolve=True))
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def unique_parameters(model: nn.Module) -> Iterable[tuple[str, nn.Parameter]]:
    """(name, parameter) once per parameter *storage*, so tied or shared weights count once."""
    seen: set[tuple[int, int]] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        key = (
            (param.untyped_storage().data_ptr(), param.data_ptr())
            if param.numel()
            else (id(param), 0)
        )
        if key in seen:
            continue
        seen.add(key)
        yield name, param


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, each tied/shared tensor counted once."""
    trainable = total = 0
    for _, param in unique_parameters(model):
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total


def freeze_all(model: nn.Module) -> None:
    for param in model.parameters():
        param.requires_grad_(False)


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters with `requires_grad`, detached and contiguous (safetensors wants that)."""
    return {
        name: param.detach().contiguous().cpu()
        for name, param in unique_parameters(model)
        if param.requires_grad
    }


def trainable_bytes(model: nn.Module) -> int:
    """Bytes of the trainable parameters (each tied tensor once), without copying them."""
    return sum(p.numel() * p.element_size() for _, p in unique_parameters(model) if p.requires_grad)


def save_tensors(tensors: Mapping[str, torch.Tensor], path: Path, meta: Mapping[str, Any]) -> None:
    """safetensors file plus a JSON sidecar (`<stem>.json`) that says how to rebuild the modules.
    Hashed while written (storage.write_safetensors): a checkpoint's manifest of a 14 GB
    `full.safetensors` then costs no second read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.write_safetensors(tensors, path, metadata={"format": "pt"})
    path.with_suffix(".json").write_text(json.dumps(dict(meta), indent=2, sort_keys=True))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return load_file(str(path)), meta


def load_into(module: nn.Module, tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """Copy `tensors` into `module`'s parameters by name; every tensor must find its parameter."""
    params = dict(module.named_parameters())
    unknown = sorted(set(tensors) - set(params))
    if unknown:
        raise UserError(
            f"{what}: saved weights do not fit this model (unknown names: {unknown[:5]})"
        )
    with torch.no_grad():
        for name, tensor in tensors.items():
            target = params[name]
            if target.shape != tensor.shape:
                raise UserError(
                    f"{what}: shape of {name} is {tuple(tensor.shape)} in the file, "
                    f"{tuple(target.shape)} in the model"
                )
            target.copy_(tensor.to(device=target.device, dtype=target.dtype))


def require_positive(value: Any, option: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UserError(f"{option} must be a positive integer, got {value!r}")


def generalised_module_names(names: Iterable[str]) -> list[str]:
    """Module names with layer indices collapsed (`layers.0.q_proj` -> `layers.N.q_proj`):
    a readable list of what exists, for error messages."""
    return sorted({re.sub(r"\.\d+\.", ".N.", f".{name}.")[1:-1] for name in names})
