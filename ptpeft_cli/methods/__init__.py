"""Fine-tuning methods: `get_method(name)` returns the object the training loop drives."""

from __future__ import annotations

from ptpeft_cli.errors import UserError
from ptpeft_cli.methods.adapter import AdapterMethod
from ptpeft_cli.methods.base import Method, StagePlan, count_parameters
from ptpeft_cli.methods.full import FullMethod
from ptpeft_cli.methods.lora import LoraMethod
from ptpeft_cli.methods.prefix import PrefixMethod
from ptpeft_cli.methods.pt_peft import PtPeftMethod, prefix_stage_fingerprint

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (FullMethod, LoraMethod, AdapterMethod, PrefixMethod, PtPeftMethod)
}


def get_method(name: str) -> Method:
    """A fresh method object by config name (`method.name`)."""
    if name not in METHODS:
        raise UserError(f"method.name={name!r}; allowed: {', '.join(METHODS)}")
    return METHODS[name]()


__all__ = [
    "METHODS",
    "Method",
    "StagePlan",
    "count_parameters",
    "get_method",
    "prefix_stage_fingerprint",
]
