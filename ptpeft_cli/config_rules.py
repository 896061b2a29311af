"""What Hydra's types cannot do to a composed config: apply a `rates` table's method options and
check allowed values and positivity. Run by the CLI on every composed config, before a run dir exists;
the schemas and choices they check against live in config.py."""

from __future__ import annotations

from typing import Any

from ptpeft_cli.config import choices


def apply_rates(cfg: Any, explicit: list[str] | tuple[str, ...] = ()) -> None:
    """Set the run's method options from its `rates` table entry (task name -> method label ->
    {dotted method key: value}) and record the entry in `method.rates_from`, so the run's saved
    config says where its rates came from. `explicit`: the command line's overrides; a key set
    both there and by the table is refused rather than silently overwritten. Idempotent."""
    from omegaconf import OmegaConf

    from ptpeft_cli.errors import UserError

    table = OmegaConf.select(cfg, "rates", default=None)
    if table is None or not table.get("tasks") or cfg.method.get("rates_from"):
        return
    task, label = str(cfg.task.name), str(cfg.method.label)
    entries = table.tasks.get(task) or {}
    if label not in entries:
        raise UserError(f"rates={table.name} has no entry for task {task} / method {label}; "
                        f"it has: {', '.join(f'{t}/{m}' for t in table.tasks for m in table.tasks[t]) or 'none'}")
    given = {o.split("=", 1)[0].lstrip("+~") for o in explicit}
    for key, value in (entries[label] or {}).items():
        if f"method.{key}" in given:
            raise UserError(f"method.{key} is set both on the command line and by rates={table.name} "
                            f"({task}/{label}); drop one of them (rates=none keeps the method's own values)")
        if OmegaConf.select(cfg, f"method.{key}", default="<missing>") == "<missing>":
            raise UserError(f"rates={table.name} ({task}/{label}) sets method.{key}, which is not a method option")
        try:
            OmegaConf.update(cfg, f"method.{key}", value, merge=False)
        except Exception as error:  # noqa: BLE001 - OmegaConf's validation errors: the table's mistake
            raise UserError(f"rates={table.name} ({task}/{label}): method.{key}={value!r} is invalid "
                            f"({str(error).splitlines()[0]})") from None
    cfg.method.rates_from = f"rates={table.name}: {task}/{label}" + (f" ({table.source})" if table.source else "")


# Options that must be strictly positive when set (None means "not set" for the limits).
POSITIVE: tuple[str, ...] = (
    "method.lr",
    "method.lora.r",
    "method.lora.alpha",
    "method.adapter.bottleneck",
    "method.prefix.length",
    "method.prefix.encoder_hidden",
    "trainer.max_steps",
    "trainer.batch_size",
    "trainer.eval_batch_size",
    "trainer.grad_accum",
    "trainer.log_every",
    "task.train_limit",
    "task.eval_limit",
    "task.max_new_tokens",
    "task.num_beams",
    "model.max_length",
    "analysis.max_rows",
    "retention.limit",
    "method.stage1.lr",
    "method.stage1.max_steps",
    "method.stage2_options.lr",
    "method.stage2_options.max_steps",
)


def validate(cfg: Any) -> None:
    """Check what Hydra's type system cannot: allowed values and positivity. Raises UserError."""
    from omegaconf import OmegaConf

    from ptpeft_cli.errors import UserError

    for key, allowed in choices().items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and value not in allowed:
            raise UserError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")
    for key in POSITIVE:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not value > 0:
            raise UserError(f"{key}={value!r} must be > 0")
    heldout = OmegaConf.select(cfg, "task.dataset.heldout", default=0)
    if heldout is not None and heldout < 0:
        raise UserError(f"task.dataset.heldout={heldout!r} must be >= 0 (val questions kept for evaluation)")
    if OmegaConf.select(cfg, "trainer.warmup_ratio", default=0) is not None:
        ratio = OmegaConf.select(cfg, "trainer.warmup_ratio", default=0)
        if not 0 <= ratio < 1:
            raise UserError(f"trainer.warmup_ratio={ratio!r} must be in [0, 1)")
