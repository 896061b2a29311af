"""A short `ptpeft train` run gives the same training losses, metrics and representation numbers
with cached image tensors as with images decoded and processed per batch (same seed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import SHORT_RUN, SMALL_WORLD, run_cli, run_dir_of

pytestmark = pytest.mark.slow


def test_cached_images_leave_losses_and_metrics_unchanged(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    results = {}
    for cache in ("true", "false"):
        out, _ = run_cli(["train", "method=pt_peft", "task=captioning", *SMALL_WORLD, *SHORT_RUN, "trainer.max_steps=6",
                          "trainer.log_every=2", "logger=none", f"trainer.cache_images={cache}",
                          f"stage_cache_dir=stages_{cache}"], workdir, monkeypatch, capsys)
        run_dir = run_dir_of(out)
        run_dir = run_dir if run_dir.is_absolute() else workdir / run_dir
        history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        results[cache] = ([row["train/loss"] for row in history if "train/loss" in row],
                          {k: v for k, v in metrics.items() if k.startswith(("eval/", "rep/", "train/"))})
    cached, fresh = results["true"], results["false"]
    assert len(cached[0]) == 6  # two stages, logged at steps 2, 4, 6
    assert cached[0] == fresh[0]
    assert cached[1] == fresh[1]
