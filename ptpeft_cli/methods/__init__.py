"""Fine-tuning methods: `get_method(name)` returns the object the training loop drives.

Adding a method is one module here, one yaml in conf/method/ and one line in METHODS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptpeft_cli.registry import Registry

if TYPE_CHECKING:
    from ptpeft_cli.methods.base import Method

METHODS: Registry[Method] = Registry("method.name", {
    "none": "ptpeft_cli.methods.none:NoMethod",
    "full": "ptpeft_cli.methods.full:FullMethod",
    "lora": "ptpeft_cli.methods.lora:LoraMethod",
    "adapter": "ptpeft_cli.methods.adapter:AdapterMethod",
    "prefix": "ptpeft_cli.methods.prefix:PrefixMethod",
    "pt_peft": "ptpeft_cli.methods.pt_peft:PtPeftMethod",
})


def get_method(name: str) -> Method:
    """A fresh (stateless) method object by config name (`method.name`)."""
    return METHODS.get(name)()


__all__ = ["METHODS", "get_method"]
