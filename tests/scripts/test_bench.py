"""`make bench`: the tiny mode runs every section and writes its block of docs/benchmarks.md
(no timing asserted); the interleaving alternates sides; targets are judged from the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from bench_measure import Summary, interleaved, paired_ratios  # noqa: E402
from bench_report import BEGIN, END, targets  # noqa: E402

METHODS = ("full", "lora", "adapter", "prefix", "pt_peft")
SECTIONS = ("## Targets", "## Load per section", "## 1. Training throughput", "## 2. Generation and metrics",
            "## 3. Peak memory", "## 4. Wall times")


def test_interleaving_alternates_sides_and_pairs_rounds() -> None:
    calls: list[str] = []
    values = interleaved({"a": lambda: calls.append("a") or 2.0, "b": lambda: calls.append("b") or 1.0},
                         repeats=3, warmup=1)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert values == {"a": [2.0] * 3, "b": [1.0] * 3}
    assert paired_ratios(values["a"], values["b"]) == Summary(2.0, 2.0, 2.0, 3)


def test_targets_are_judged_from_the_figures() -> None:
    ratio = {"median": 0.95, "low": 0.9, "high": 1.0, "n": 5}
    report = {"tiny": False,
              "training": [{"method": "lora", "ratio": ratio}, {"method": "full", "ratio": {**ratio, "median": 0.8}}],
              "generation": {"ratio": {**ratio, "median": 12.0}, "ratio_batching_alone": {**ratio, "median": 5.0}},
              "memory": [{"method": "full", "relative_to_full": 1.0}, {"method": "lora", "relative_to_full": 0.3},
                         {"method": "prefix", "relative_to_full": 0.7}],
              "make_run": [{"run": "cold", "seconds": 170.0}, {"run": "warm", "seconds": 160.0}],
              "help": {**ratio, "median": 0.4}, "svd": [{"shape": "4096x192", "seconds": {**ratio, "median": 2.5}}]}
    status = {name: verdict for name, _, verdict in targets(report)}
    assert status["training throughput >= 0.9x in-memory loop: lora"] == "met"
    assert status["training throughput >= 0.9x in-memory loop: full"] == "**not met**"
    assert status["batched generation (KV cache) >= 10x per-sample without KV cache"] == "met"
    assert status["batched generation (KV cache) >= 10x per-sample with KV cache (batching alone)"] == "**not met**"
    assert status["lora peak memory <= 0.6x full fine-tuning"] == "met"
    assert status["prefix peak memory <= 0.6x full fine-tuning"] == "**not met**"
    assert status["`make run` after install, cold <= 180 s"] == "met"
    assert status["`make run` after install, warm <= 150 s"] == "**not met**"
    assert status["`ptpeft --help` < 1.5 s"] == "met"
    assert status["SVD analysis of 4096x192 <= 2 s"] == "**not met**"


@pytest.mark.slow
def test_tiny_bench_writes_every_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nnotes before\n\n{BEGIN}\nstale figures\n{END}\n\nnotes after\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    subprocess.run([sys.executable, "scripts/bench.py", "--tiny", "--out", str(tmp_path / "out"), "--doc", str(doc)],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=1800)
    text = doc.read_text()
    assert "notes before" in text and "notes after" in text and "stale figures" not in text
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and "--tiny mode" in text
    for heading in SECTIONS:
        assert heading in text, heading
    for method in METHODS:
        assert f"in-memory loop: {method} |" in text and f"| {method} |" in text, method
    assert "DataLoader worker process" in text
    for target in ("batched generation (KV cache) >= 10x per-sample without", "lora peak memory", "prefix peak memory", "cold <= 180 s",
                   "warm <= 150 s", "`ptpeft --help` < 1.5 s", "SVD analysis of 4096x"):
        assert target in text, target
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert {"training", "workers", "generation", "scoring", "memory", "help", "svd", "make_run", "loads",
            "commit"} <= set(report)
