"""Model families by name: the one place that maps `model.family` to code."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ptpeft_cli.errors import UserError
from ptpeft_cli.models.base import LoadedModel, ModelFamily


def _lazy(module: str, cls: str) -> Callable[[], ModelFamily]:
    """A factory that imports `ptpeft_cli.models.<module>` only when the family is used."""

    def factory() -> ModelFamily:
        return getattr(importlib.import_module(f"ptpeft_cli.models.{module}"), cls)()

    return factory


# Lazy factories: importing the registry must not import every family's dependencies.
FAMILIES: dict[str, Callable[[], ModelFamily]] = {
    "tiny_llava": _lazy("tiny_llava", "TinyLlavaFamily"),
    "llava15": _lazy("llava15", "Llava15Family"),
    "qwen2_vl": _lazy("qwen2_vl", "Qwen2VLFamily"),
    "blip2_opt": _lazy("blip2_opt", "Blip2OptFamily"),
    "git": _lazy("git", "GitFamily"),
    "blip": _lazy("blip", "BlipFamily"),
    "hf": _lazy("hf", "HFFamily"),
}


def get_family(name: str) -> ModelFamily:
    """The family registered under `name`; a UserError lists the known ones."""
    try:
        factory = FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise UserError(f"unknown model.family={name!r}; known families: {known}") from None
    return factory()


__all__ = ["FAMILIES", "LoadedModel", "ModelFamily", "get_family"]
