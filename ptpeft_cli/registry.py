"""Name -> class registries for the pluggable parts (tasks, dataset sources, methods, families).

Entries are "module:Class" strings imported on first use, so listing the choices (config
validation, `--help`) costs nothing and a part's heavy dependencies load only when it is picked.
Adding a part is one line in the registry that owns its kind.
"""

from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar

from ptpeft_cli.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Lazily imported classes by name; unknown names are a UserError listing the known ones."""

    def __init__(self, option: str, entries: dict[str, str]) -> None:
        self.option = option  # the config key users set, for error messages
        self._entries = dict(entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> type[T]:
        if name not in self._entries:
            raise UserError(f"{self.option}={name!r} is not allowed; choose one of: {', '.join(self._entries)}")
        module_name, _, attribute = self._entries[name].partition(":")
        cls: Any = getattr(importlib.import_module(module_name), attribute)
        return cls
