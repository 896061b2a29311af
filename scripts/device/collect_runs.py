"""Every run dir under the given roots (a sweep, a tree of them) as one JSON file: a GPU session
sends back at most 8 files, so a sweep's runs travel as one. Per run: its dir name, model family,
method label, task, metrics (or the error that stopped it) and the settings that make its
figures comparable (steps, batch, precision, gradient checkpointing).

    python scripts/device/collect_runs.py SWEEP_DIR [...] --out runs.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

from ptpeft_cli.rundir import find_runs

SETTINGS = ("trainer.max_steps", "trainer.batch_size", "hardware.device", "hardware.precision",
            "model.gradient_checkpointing", "model.name_or_path")


def collect(roots: list[Path]) -> list[dict]:
    return [{"run": run.path.name, "model": run.model, "method": run.label, "task": run.task,
             "settings": {key: OmegaConf.select(run.config, key, default=None) for key in SETTINGS},
             "metrics": run.metrics, "error": run.error} for run in find_runs(roots)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    runs = collect(args.roots)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(runs, indent=1, default=str))
    print(f"{len(runs)} runs ({sum(r['error'] is not None for r in runs)} failed) -> {args.out}")


if __name__ == "__main__":
    main()
