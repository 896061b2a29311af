"""Model families by name: the one place that maps `model.family` to code."""

from __future__ import annotations

from collections.abc import Callable

from ptpeft_cli.errors import UserError
from ptpeft_cli.models.base import LoadedModel, ModelFamily


def _tiny_llava() -> ModelFamily:
    from ptpeft_cli.models.tiny_llava import TinyLlavaFamily

    return TinyLlavaFamily()


# Lazy factories: importing the registry must not import every family's dependencies.
FAMILIES: dict[str, Callable[[], ModelFamily]] = {"tiny_llava": _tiny_llava}


def get_family(name: str) -> ModelFamily:
    """The family registered under `name`; a UserError lists the known ones."""
    try:
        factory = FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise UserError(f"unknown model.family={name!r}; known families: {known}") from None
    return factory()


__all__ = ["FAMILIES", "LoadedModel", "ModelFamily", "get_family"]
