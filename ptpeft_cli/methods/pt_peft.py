"""PT-PEFT (Kim et al., 2024): stage 1 trains a prefix; stage 2 adds LoRA or adapters on top.

peft refuses to mix prefix tuning with LoRA in one model, so the prefix is ours (hooks on the
decoder stack, see prefix.py) and LoRA is peft's, wrapped around the prefixed model. Weights are
saved per component: `<dir>/prefix/`, `<dir>/lora/` (plain peft format), `<dir>/adapter/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peft import PeftModel

from ptpeft_cli.config import MethodConfig, PrefixOptions
from ptpeft_cli.errors import UserError
from ptpeft_cli.methods.adapter import (
    adapters,
    attach_adapters,
    load_adapters,
    save_adapters,
    set_adapters_trainable,
    validate_adapter,
)
from ptpeft_cli.methods.base import Method, StagePlan, fingerprint, freeze_all, to_plain
from ptpeft_cli.methods.lora import (
    apply_lora,
    load_lora,
    save_lora,
    set_lora_trainable,
    validate_lora,
)
from ptpeft_cli.methods.prefix import (
    apply_prefix,
    find_prefix,
    load_prefix,
    save_prefix,
    validate_prefix,
)
from ptpeft_cli.models.base import LoadedModel

STAGE2_CHOICES = ("lora", "adapter")


def prefix_stage_fingerprint(
    model_id: str, data_id: str, prefix: PrefixOptions, seed: int, schedule: Mapping[str, Any]
) -> str:
    """Hash of what determines the stage-1 prefix; stage-2 options are deliberately absent so
    PT-LoRA and PT-Adapter runs share one stage 1."""
    return fingerprint(
        method="pt_peft/stage1",
        model_id=model_id,
        data_id=data_id,
        prefix=to_plain(prefix),
        seed=seed,
        schedule=to_plain(schedule),
    )


class PtPeftMethod(Method):
    name = "pt_peft"

    def validate(self, cfg: MethodConfig) -> None:
        super().validate(cfg)
        validate_prefix(cfg)
        if cfg.stage2 not in STAGE2_CHOICES:
            raise UserError(f"method.stage2={cfg.stage2!r}; allowed: {', '.join(STAGE2_CHOICES)}")
        (validate_lora if cfg.stage2 == "lora" else validate_adapter)(cfg)

    def stages(self, cfg: MethodConfig, default_steps: int) -> list[StagePlan]:
        def plan(name: str, lr: float | None, steps: int | None) -> StagePlan:
            return StagePlan(
                name,
                float(cfg.lr if lr is None else lr),
                int(default_steps if steps is None else steps),
            )

        return [
            plan("prefix", cfg.stage1.lr, cfg.stage1.max_steps),
            plan(f"prefix+{cfg.stage2}", cfg.stage2_options.lr, cfg.stage2_options.max_steps),
        ]

    def setup_stage(self, loaded: LoadedModel, cfg: MethodConfig, stage: int) -> None:
        """Stage 0: a new prefix (or the one already loaded). Stage 1: add `cfg.stage2` on top of
        the prefix the model carries (from stage 0 or from `load` of a cached stage 1)."""
        self.validate(cfg)
        if stage == 0:
            freeze_all(loaded.model)
            apply_prefix(loaded, cfg).requires_grad_(True)
            return
        if stage != 1:
            raise ValueError(f"method pt_peft has stages 0 and 1, got stage {stage}")
        tuner = find_prefix(loaded.model)
        if tuner is None:
            raise ValueError(
                "pt_peft stage 1 needs stage 0's prefix: run stage 0 or load its weights first"
            )
        if cfg.stage2 == "lora":
            if not isinstance(loaded.model, PeftModel):
                apply_lora(loaded, cfg)  # freezes everything but LoRA, the prefix included
            set_lora_trainable(loaded.model, True)
        else:
            freeze_all(loaded.model)
            attach_adapters(loaded, int(cfg.adapter.bottleneck), str(cfg.adapter.activation))
            set_adapters_trainable(loaded.model, True)
        tuner.requires_grad_(bool(cfg.train_prefix_in_stage2))

    def save(self, loaded: LoadedModel, out_dir: Path) -> None:
        out_dir = Path(out_dir)
        save_prefix(loaded, out_dir / "prefix")
        if isinstance(loaded.model, PeftModel):
            save_lora(loaded, out_dir / "lora")
        if adapters(loaded.model):
            save_adapters(loaded, out_dir / "adapter")

    def load(self, loaded: LoadedModel, cfg: MethodConfig, weights_dir: Path) -> None:
        """Prefix, plus whichever stage-2 component was saved (none for a stage-1 cache)."""
        weights_dir = Path(weights_dir)
        load_prefix(loaded, weights_dir / "prefix")
        if (weights_dir / "lora").is_dir():
            load_lora(loaded, weights_dir / "lora")
        if (weights_dir / "adapter").is_dir():
            load_adapters(loaded, weights_dir / "adapter")
        freeze_all(loaded.model)

    def stage_fingerprint(
        self,
        model_id: str,
        data_id: str,
        cfg: MethodConfig,
        seed: int,
        schedule: Mapping[str, Any],
        stage: int = 0,
    ) -> str:
        """Stage 0 depends on the prefix options and stage-1 lr/steps only (`schedule`: the
        trainer options stage 1 runs with, e.g. batch size, scheduler, warmup, default steps)."""
        if stage != 0:
            return super().stage_fingerprint(model_id, data_id, cfg, seed, schedule, stage)
        stage1 = {
            "lr": cfg.lr if cfg.stage1.lr is None else cfg.stage1.lr,
            "max_steps": cfg.stage1.max_steps,
        }
        return prefix_stage_fingerprint(
            model_id, data_id, cfg.prefix, seed, {**dict(schedule), "stage1": stage1}
        )
