"""`ptpeft --help` and `ptpeft train --help` stay fast: they import none of the heavy libraries
(torch, transformers, datasets, ...). Timing itself is `make bench`'s job; this guards the cause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "datasets", "peft", "wandb", "matplotlib", "pycocoevalcap", "evaluate")
PROBE = """
import json, sys
from ptpeft_cli.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"]])
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=repo, env=env,
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
