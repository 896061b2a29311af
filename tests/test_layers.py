"""The house's one-way data flow, checked on the source: a package imports only packages below it.

cli -> commands -> synthetic (the demo) -> reporting -> planning -> analysis -> training -> methods -> tasks ->
evaluation (official metrics, generation) -> models -> data, with config (+ config_rules), registry, rundir,
tables, launch, storage and errors as ground floors.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ptpeft_cli"
GROUND = {"errors", "registry", "config", "config_rules", "rundir", "tables", "launch", "storage", "__init__"}
ORDER = ["data", "models", "evaluation", "tasks", "methods", "training", "analysis", "planning", "reporting", "synthetic",
         "commands", "cli", "__main__"]


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ptpeft_cli"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ptpeft_cli")}
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    own = _layer("ptpeft_cli." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    if own in GROUND or own not in ORDER:
        return
    for module in _imports(path):
        target = _layer(module) if module != "ptpeft_cli" else "__init__"
        if target in GROUND or target == own:
            continue
        assert ORDER.index(target) < ORDER.index(own), f"{path.relative_to(PACKAGE)} imports {module} (a higher layer)"


def test_product_layers_never_name_the_demo() -> None:
    """data, models, methods, training and evaluation read files; they do not know who wrote them."""
    for layer in ("data", "models", "methods", "training", "evaluation"):
        for path in (PACKAGE / layer).rglob("*.py"):
            assert "ptpeft_cli.synthetic" not in path.read_text(), path
