"""Full fine-tuning: the family decides which parameters (language model + projector by default)."""

from __future__ import annotations

from pathlib import Path

from ptpeft_cli.config import MethodConfig
from ptpeft_cli.errors import UserError
from ptpeft_cli.methods.base import (
    SingleStageMethod,
    freeze_all,
    load_into,
    load_tensors,
    save_tensors,
    trainable_state_dict,
    unique_parameters,
)
from ptpeft_cli.models.base import LoadedModel

WEIGHTS_FILE = "full.safetensors"


class FullMethod(SingleStageMethod):
    name = "full"
    trains_base_weights = True

    def apply(self, loaded: LoadedModel, cfg: MethodConfig) -> None:
        trained = 0
        for name, param in unique_parameters(loaded.model):
            wanted = loaded.family.full_trainable(name, bool(cfg.train_vision))
            param.requires_grad_(wanted)
            trained += int(wanted)
        if trained == 0:
            raise UserError(
                f"method=full: family {loaded.family.name} marks no parameter as trainable"
            )

    def save(self, loaded: LoadedModel, out_dir: Path) -> None:
        tensors = trainable_state_dict(loaded.model)
        save_tensors(
            tensors, Path(out_dir) / WEIGHTS_FILE, {"method": self.name, "tensors": len(tensors)}
        )

    def load(self, loaded: LoadedModel, cfg: MethodConfig, weights_dir: Path) -> None:
        tensors, _ = load_tensors(Path(weights_dir) / WEIGHTS_FILE)
        load_into(loaded.model, tensors, "method=full")
        freeze_all(loaded.model)  # loaded for evaluation; setup_stage re-enables training
