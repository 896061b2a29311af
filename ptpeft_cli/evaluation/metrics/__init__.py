"""Local `evaluate` modules, loaded by path so they work offline.

``evaluate.load("<name>")`` fetches scripts from the Hugging Face Hub, which is unreachable
here; ``evaluate.load("<local dir>")`` loads ``<dir>/<dir name>.py`` from disk instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptpeft_cli.errors import UserError

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES: tuple[str, ...] = ("coco_caption", "vqa_accuracy")


def load_metric(name: str, **kwargs: Any) -> Any:
    """Load one of ``METRIC_NAMES`` as an ``evaluate.EvaluationModule``; ``kwargs`` go to
    ``evaluate.load`` (e.g. ``keep_in_memory=True``, ``num_process``/``process_id``)."""
    if name not in METRIC_NAMES:
        raise UserError(f"unknown metric {name!r}; choose one of {', '.join(METRIC_NAMES)}")
    import evaluate  # imported here: it pulls in datasets/pandas, seconds that only this needs

    return evaluate.load(str(METRICS_DIR / name), **kwargs)
