"""`make bench`: speed targets measured, never asserted in tests.

1. ptpeft's `train_step` against a bare PyTorch loop on the same model and batches, per method.
2. Batched greedy generation throughput.
3. The representation analysis (SVD metrics) on 4096 x D matrices.
4. Wall time of whole `ptpeft train` runs (first run writes the synthetic world), optional.

Prints a markdown table and writes outputs/bench/bench.json. Numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ptpeft_cli.analysis.spectrum import spectrum_metrics
from ptpeft_cli.cli import compose_config
from ptpeft_cli.methods import get_method
from ptpeft_cli.models import get_family
from ptpeft_cli.tasks import get_task
from ptpeft_cli.training.batches import evaluate_on_task, train_loader
from ptpeft_cli.training.hardware import resolve_hardware, seed_everything
from ptpeft_cli.training.loop import build_optimizer, to_device, train_step

SMALL_WORLD = ["task.dataset.n_train=256", "task.dataset.n_val=16", "task.dataset.n_test=128"]


def _setup(method: str, data_root: Path, batch_size: int) -> tuple:
    cfg = compose_config("train", [f"method={method}", f"task.dataset.root={data_root}",
                                   f"trainer.batch_size={batch_size}", *SMALL_WORLD])
    OmegaConf.set_struct(cfg, False)
    seed_everything(0)
    hardware = resolve_hardware(cfg.hardware.device, cfg.hardware.precision)
    loaded = get_family(cfg.model.family).load(cfg.model)
    task = get_task(cfg.task, cfg.model.instructions)
    data = task.load()
    get_method(method).setup_stage(loaded, cfg.method, 0)
    loaded.model.to(hardware.device)
    batches = [to_device(b, hardware.device) for _, b in zip(range(8), train_loader(loaded, task, data, cfg.trainer), strict=False)]
    return cfg, hardware, loaded, (task, data), batches


def bench_train_step(method: str, data_root: Path, batch_size: int, steps: int) -> dict:
    cfg, hardware, loaded, _, batches = _setup(method, data_root, batch_size)
    model = loaded.model
    model.train()
    optimizer, scheduler = build_optimizer(model, 1e-4, 0.0, steps * 4, 0, "constant")

    def ptpeft_loop() -> None:
        for i in range(steps):
            train_step(model, [batches[i % len(batches)]], optimizer, scheduler, hardware, 1.0)

    bare_optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def bare_loop() -> None:
        for i in range(steps):
            bare_optimizer.zero_grad(set_to_none=True)
            model(**batches[i % len(batches)]).loss.backward()
            bare_optimizer.step()

    ptpeft_loop()  # warm-up
    results = {}
    for name, loop in (("ptpeft", ptpeft_loop), ("bare", bare_loop)):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            loop()
            times.append(time.perf_counter() - start)
        results[name] = steps * batch_size / statistics.median(times)
    return {"method": method, "ptpeft_samples_per_s": results["ptpeft"], "bare_samples_per_s": results["bare"],
            "overhead": results["bare"] / results["ptpeft"] - 1}


def bench_generation(data_root: Path, batch_size: int) -> dict:
    cfg, hardware, loaded, (task, data), _ = _setup("full", data_root, 32)
    cfg.trainer.eval_batch_size = batch_size
    cfg.task.meteor = False
    evaluate_on_task(loaded, task, data, cfg, hardware)  # warm-up
    start = time.perf_counter()
    predictions, _ = evaluate_on_task(loaded, task, data, cfg, hardware)
    return {"images": len(predictions), "images_per_s": len(predictions) / (time.perf_counter() - start)}


def bench_svd(dims: list[int]) -> list[dict]:
    rows = []
    for dim in dims:
        matrix = torch.randn(4096, dim)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            spectrum_metrics(matrix, center=True)
            times.append(time.perf_counter() - start)
        rows.append({"shape": f"4096x{dim}", "seconds": statistics.median(times)})
    return rows


def bench_cli(data_root: Path) -> list[dict]:
    """Whole `ptpeft train` runs on the defaults: the first writes the synthetic world."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env_root = Path(tmp) / "data"
        for label in ("first run (writes world)", "later run"):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ptpeft_cli.cli", "train", "logger=none",
                            f"task.dataset.root={env_root}", f"output_root={tmp}/outputs"], check=True,
                           capture_output=True)
            rows.append({"run": label, "seconds": time.perf_counter() - start})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--methods", default="full,lora,adapter,prefix,pt_peft")
    parser.add_argument("--svd-dims", default="128,256,1024")
    parser.add_argument("--cli", action="store_true", help="also time whole `ptpeft train` runs")
    parser.add_argument("--out", default="outputs/bench")
    args = parser.parse_args()

    data_root = Path(args.out) / "data"
    report: dict = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                                "threads": torch.get_num_threads(),
                                "device": "cuda" if torch.cuda.is_available() else "cpu"}}
    report["train_step"] = [bench_train_step(m, data_root, args.batch_size, args.steps)
                            for m in args.methods.split(",")]
    report["generation"] = bench_generation(data_root, 64)
    report["svd"] = bench_svd([int(d) for d in args.svd_dims.split(",")])
    if args.cli:
        report["cli"] = bench_cli(data_root)

    print("| method | ptpeft train_step (samples/s) | bare loop (samples/s) | overhead |\n|---|---|---|---|")
    for row in report["train_step"]:
        print(f"| {row['method']} | {row['ptpeft_samples_per_s']:.0f} | {row['bare_samples_per_s']:.0f} | "
              f"{100 * row['overhead']:+.1f}% |")
    print(f"\ngeneration: {report['generation']['images_per_s']:.0f} images/s "
          f"({report['generation']['images']} images, batch 64)")
    for row in report["svd"]:
        print(f"SVD metrics {row['shape']}: {row['seconds']:.3f} s")
    for row in report.get("cli", []):
        print(f"ptpeft train, {row['run']}: {row['seconds']:.1f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
