"""`method=none`: the pre-trained model as it is, evaluated and analysed like any run.

It gives every table its zero-shot row; with no stage, the tuned features are the base features
and the effective-rank ratio is exactly 1.
"""

from __future__ import annotations

from pathlib import Path

from ptpeft_cli.config import MethodConfig
from ptpeft_cli.methods.base import Method, StagePlan, freeze_all
from ptpeft_cli.models.base import LoadedModel


class NoMethod(Method):
    name = "none"

    def stages(self, cfg: MethodConfig, default_steps: int) -> list[StagePlan]:
        return []

    def setup_stage(self, loaded: LoadedModel, cfg: MethodConfig, stage: int) -> None:
        raise ValueError("method none has no stage to set up")

    def save(self, loaded: LoadedModel, out_dir: Path) -> None:
        """Nothing was trained: the weights are the base checkpoint (`model.name_or_path`)."""
        Path(out_dir).mkdir(parents=True, exist_ok=True)

    def load(self, loaded: LoadedModel, cfg: MethodConfig, weights_dir: Path) -> None:
        freeze_all(loaded.model)
