"""`make bench`: speed and memory of ptpeft, measured side by side; writes docs/benchmarks.md.

1. Training throughput of ptpeft's real path (cached images, DataLoader, collation, `run_stage`)
   against a minimal hand-written loop over batches already in memory, same model and batch,
   per method -> ratio.
2. Batched generation (KV cache, eval batch) against per-sample generation on the same eval
   images, without and with the KV cache -> ratios; metric computation time in a fresh process
   (METEOR's Java start included).
3. Peak memory per method relative to full fine-tuning on a scaled-up model (one process each).
4. Wall times: `ptpeft --help`, the SVD analysis of 4096 x D, `ptpeft train` defaults after
   install (cold: world not yet written; warm), optionally `make paper-quick`.

Two-sided figures alternate the sides (A B, B A, ...) after warm-up, >= 5 repeats by default, and
report the median and range of per-round ratios first. Each section records how busy the
machine was (load average, other processes' CPU), so contaminated figures are visible.
`--tiny` runs everything at minimal size, in about a minute (tests use it; figures are not judged).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_measure import (
    LoadLog,
    Summary,
    commit,
    interleaved,
    machine,
    paired_ratios,
    timed_command,
)
from bench_report import write_report

from ptpeft_cli.analysis.spectrum import spectrum_metrics
from ptpeft_cli.cli import compose_config
from ptpeft_cli.evaluation import generation
from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.base import freeze_all
from ptpeft_cli.models import get_family
from ptpeft_cli.tasks import get_task
from ptpeft_cli.training.batches import predict_task, train_loader, with_cached_images
from ptpeft_cli.training.hardware import resolve_hardware, seed_everything
from ptpeft_cli.training.loop import run_stage, to_device

REPO = Path(__file__).resolve().parent.parent
METHODS = "full,lora,adapter,prefix,pt_peft"
TINY_WORLD = ["task.dataset.n_train=16", "task.dataset.n_val=4", "task.dataset.n_test=8"]
TINY_RUN = [*TINY_WORLD, "trainer.max_steps=2", "trainer.batch_size=4", "trainer.eval_batch_size=4",
            "analysis.max_rows=64", "task.meteor=false", "logger=none"]
RESIDENT_BATCHES = 8  # the in-memory loop cycles over this many pre-built batches


@dataclasses.dataclass
class Settings:
    steps: int = 20
    repeats: int = 5
    warmup: int = 1
    batch_size: int = 32
    gen_images: int = 128
    eval_batch_size: int = 64
    svd_dims: tuple[int, ...] = (192, 1024)
    memory_scale: str = "big"
    meteor: bool = True


TINY = Settings(steps=1, repeats=3, warmup=1, batch_size=4, gen_images=8, eval_batch_size=4, svd_dims=(32,),
                memory_scale="tiny", meteor=False)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.tiny = args, args.tiny
        self.settings = TINY if args.tiny else Settings(steps=args.steps, repeats=args.repeats)
        self.out = Path(args.out)
        self.data_root = self.out / ("data-tiny" if args.tiny else "data")
        self.loads = LoadLog()
        self.hardware = resolve_hardware("auto", "auto")

    def compose(self, overrides: list[str]) -> Any:
        world = TINY_WORLD if self.tiny else []
        return compose_config("train", [f"task.dataset.root={self.data_root}", "logger=none", *world, *overrides])

    def sync(self) -> None:
        if self.hardware.device.type == "cuda":
            torch.cuda.synchronize()

    # --- 1. training throughput ------------------------------------------------------------------
    def prepared(self, method: str) -> tuple[Any, Any, Any, Any, Any]:
        """(cfg, task, loaded, data with cached images, last stage plan), the method set up
        through all its stages (multi-stage methods are timed in their last stage)."""
        cfg = self.compose([f"method={method}", f"trainer.batch_size={self.settings.batch_size}"])
        seed_everything(0)
        task, loaded = get_task(cfg.task, cfg.model.instructions), get_family(cfg.model.family).load(cfg.model)
        data = with_cached_images(loaded, task.load())
        freeze_all(loaded.model)  # as `ptpeft train`: the method's stages say what trains
        owner = get_method(method)
        plans = owner.stages(cfg.method, self.settings.steps)
        for index in range(len(plans)):
            owner.setup_stage(loaded, cfg.method, index)
        loaded.model.to(self.hardware.device)
        return cfg, task, loaded, data, plans[-1]

    def stage_runner(self, model: Any, loader: Any, plan: Any, trainer: Any) -> Any:
        """ptpeft's loop as `ptpeft train` runs it, for `steps` steps -> samples/s."""
        def run() -> float:
            return run_stage(model, loader, name=plan.name, lr=plan.lr, max_steps=self.settings.steps, grad_accum=1,
                             weight_decay=trainer.weight_decay, warmup_ratio=trainer.warmup_ratio,
                             scheduler=trainer.scheduler, max_grad_norm=trainer.max_grad_norm, hardware=self.hardware,
                             log_every=trainer.log_every, log=lambda row: None, progress=False).samples_per_second

        return run

    def training(self, method: str) -> dict[str, Any]:
        s = self.settings
        cfg, task, loaded, data, plan = self.prepared(method)
        model, trainer = loaded.model, cfg.trainer
        cuda = self.hardware.device.type == "cuda"
        ptpeft_path = self.stage_runner(model, train_loader(loaded, task, data, trainer, pin_memory=cuda), plan, trainer)
        resident = [to_device(batch, self.hardware.device) for batch, _ in
                    zip(train_loader(loaded, task, data, trainer), range(RESIDENT_BATCHES), strict=False)]
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=plan.lr)

        def in_memory() -> float:
            model.train()
            self.sync()
            start = time.perf_counter()
            for step in range(s.steps):
                optimizer.zero_grad(set_to_none=True)
                with self.hardware.autocast():
                    loss = model(**resident[step % len(resident)]).loss
                loss.backward()
                optimizer.step()
            self.sync()
            seconds = time.perf_counter() - start
            model.eval()
            return s.steps * s.batch_size / seconds

        values = interleaved({"ptpeft": ptpeft_path, "in_memory": in_memory}, s.repeats, s.warmup)
        return {"method": method, "stage": plan.name, "ratio": paired_ratios(values["ptpeft"], values["in_memory"]),
                "ptpeft": Summary.of(values["ptpeft"]), "in_memory": Summary.of(values["in_memory"]),
                "steps": s.steps, "batch_size": s.batch_size}

    def workers(self) -> dict[str, Any]:
        """Does a DataLoader worker process help? (method=prefix, i.e. PT-PEFT's stage 1, cached
        images; informational). Each round starts the worker anew, as each epoch does."""
        cfg, task, loaded, data, plan = self.prepared("prefix")
        sides = {}
        for count in (0, 1):
            trainer = cfg.trainer.copy()
            trainer.num_workers = count
            sides[f"workers={count}"] = self.stage_runner(loaded.model, train_loader(loaded, task, data, trainer), plan,
                                                          cfg.trainer)
        values = interleaved(sides, self.settings.repeats, self.settings.warmup)
        return {"ratio": paired_ratios(values["workers=1"], values["workers=0"]),
                "workers=0": Summary.of(values["workers=0"]), "workers=1": Summary.of(values["workers=1"])}

    # --- 2. generation and metrics -------------------------------------------------------------
    def generation(self) -> dict[str, Any]:
        s = self.settings
        cfg = self.compose(["method=none", f"trainer.eval_batch_size={s.eval_batch_size}",
                            f"task.eval_limit={s.gen_images}", "task.meteor=false"])
        task, loaded = get_task(cfg.task, cfg.model.instructions), get_family(cfg.model.family).load(cfg.model)
        loaded.model.to(self.hardware.device)
        data = with_cached_images(loaded, task.load())
        single = cfg.copy()
        single.trainer.eval_batch_size = 1
        outputs: dict[str, dict[int, str]] = {}
        generation_config = loaded.model.generation_config

        def side(name: str, run_cfg: Any, use_cache: bool = True) -> float:
            generation_config.use_cache = use_cache
            self.sync()
            start = time.perf_counter()
            try:
                outputs[name] = predict_task(loaded, task, data, run_cfg, self.hardware)
            finally:
                generation_config.use_cache = True
            self.sync()
            return len(outputs[name]) / (time.perf_counter() - start)

        values = interleaved({"batched": lambda: side("batched", cfg),
                              "per_sample": lambda: side("per_sample", single),
                              "per_sample_no_cache": lambda: side("per_sample_no_cache", single, use_cache=False)},
                             s.repeats, s.warmup)
        batched = outputs["batched"]
        return {"images": len(batched), "eval_batch_size": s.eval_batch_size,
                "ratio": paired_ratios(values["batched"], values["per_sample_no_cache"]),
                "ratio_batching_alone": paired_ratios(values["batched"], values["per_sample"]),
                **{name: Summary.of(value) for name, value in values.items()},
                "identical_predictions": {name: sum(batched[k] == outputs[name][k] for k in batched)
                                          for name in ("per_sample", "per_sample_no_cache")}}

    def scoring(self) -> dict[str, float]:
        """In a fresh process, so the first METEOR call pays the Java start as a run's does."""
        overrides = [f"task.dataset.root={self.data_root}", *(TINY_WORLD if self.tiny else [])]
        code = ("import json,sys,time\nfrom ptpeft_cli.cli import compose_config\nfrom ptpeft_cli.tasks import get_task\n"
                "cfg=compose_config('train',json.loads(sys.argv[1]));meteor=sys.argv[2]=='1'\n"
                "task=get_task(cfg.task,cfg.model.instructions);data=task.load();out={}\n"
                "preds={int(i):c[-1] for i,c in zip(data.eval['example_id'],data.eval['captions'])}\n"
                "for label,m in ([('meteor_first_call',True),('meteor_again',True)] if meteor else [])+[('without_meteor',False)]:\n"
                "  task.cfg.meteor=m;t=time.perf_counter();task.score(data,preds);out[label]=time.perf_counter()-t\n"
                "out['images']=len(preds);print(json.dumps(out))")
        _, result = timed_command([sys.executable, "-c", code, json.dumps(overrides), "1" if self.settings.meteor else "0"],
                                  env=self.env(), cwd=REPO)
        return json.loads(result.stdout.strip().splitlines()[-1])

    # --- 3. memory -----------------------------------------------------------------------------
    def memory(self, methods: list[str]) -> list[dict[str, Any]]:
        rows = []
        for method in ["full", *[m for m in methods if m != "full"]]:
            _, result = timed_command([sys.executable, str(REPO / "scripts" / "bench_memory.py"), f"--method={method}",
                                       f"--scale={self.settings.memory_scale}"], env=self.env(), cwd=REPO)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        key = "cuda_max_allocated_mib" if "cuda_max_allocated_mib" in rows[0] else "peak_over_baseline_mib"
        for row in rows:
            row["relative_to_full"] = row[key] / rows[0][key]
            row["measure"] = key
        return rows

    # --- 4. wall times -------------------------------------------------------------------------
    def help_time(self) -> Summary:
        times = [timed_command([sys.executable, "-m", "ptpeft_cli", "--help"], env=self.env(), cwd=REPO)[0]
                 for _ in range(max(self.settings.repeats, 2))]
        return Summary.of(times)

    def svd(self) -> list[dict[str, Any]]:
        rows = []
        for dim in self.settings.svd_dims:
            matrix = torch.randn(4096, dim)
            spectrum_metrics(matrix, center=True)  # warm-up
            times = []
            for _ in range(max(self.settings.repeats, 2)):
                start = time.perf_counter()
                spectrum_metrics(matrix, center=True)
                times.append(time.perf_counter() - start)
            rows.append({"shape": f"4096x{dim}", "seconds": Summary.of(times), "threads": torch.get_num_threads()})
        return rows

    def make_run(self) -> list[dict[str, Any]]:
        """`ptpeft train` with the defaults, as `make run` runs it after install: cold (fresh
        world dir) then warm (world and image cache present; fresh outputs, so no stage cache)."""
        rows = []
        with tempfile.TemporaryDirectory(prefix="ptpeft-bench-") as tmp:
            env = {**self.env(), "PTPEFT_DATA": f"{tmp}/data"}
            env.setdefault("WANDB_MODE", "offline")
            for label in ("cold", "warm"):
                outputs = f"{tmp}/outputs-{label}"
                command = [sys.executable, "-m", "ptpeft_cli", "train", f"output_root={outputs}",
                           *(TINY_RUN if self.tiny else []), *self.args.run_args]
                seconds, result = timed_command(command, env=env, cwd=REPO)
                match = re.search(r"^run dir: (.+)$", result.stdout, re.MULTILINE)
                metrics = json.loads((Path(match.group(1)) / "metrics.json").read_text()) if match else {}
                breakdown = {k.removeprefix("time/"): v for k, v in metrics.items() if k.startswith("time/")}
                rows.append({"run": label, "seconds": seconds, "breakdown": breakdown})
        return rows

    def paper_quick(self) -> float:
        """`make paper-quick` as the Makefile runs it (scripts/paper.sh with the venv's ptpeft)."""
        with tempfile.TemporaryDirectory(prefix="ptpeft-bench-") as tmp:
            ptpeft = Path(sys.executable).with_name("ptpeft")
            if not ptpeft.exists():  # not installed as a console script: the same CLI via -m
                ptpeft = Path(tmp) / "ptpeft"
                ptpeft.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ptpeft_cli "$@"\n')
                ptpeft.chmod(0o755)
            env = {**self.env(), "PTPEFT": str(ptpeft)}
            return timed_command(["bash", "scripts/paper.sh", "quick"], env=env, cwd=REPO)[0]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    # --- all -----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        methods = [m for m in self.args.methods.split(",") if m]
        report: dict[str, Any] = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "tiny": self.tiny,
                                  "commit": commit(REPO), "machine": machine(), "settings": dataclasses.asdict(self.settings),
                                  "loadavg_at_start": os.getloadavg()[0]}
        with self.loads.section("training"):
            report["training"] = [self.training(method) for method in methods]
            report["workers"] = self.workers()
        with self.loads.section("generation"):
            report["generation"] = self.generation()
        with self.loads.section("scoring"):
            report["scoring"] = self.scoring()
        with self.loads.section("memory"):
            report["memory"] = self.memory(methods)
        with self.loads.section("help"):
            report["help"] = self.help_time()
        with self.loads.section("svd"):
            report["svd"] = self.svd()
        if not self.args.skip_runs:
            with self.loads.section("make_run"):
                report["make_run"] = self.make_run()
        if self.args.paper_quick:
            with self.loads.section("paper_quick"):
                report["paper_quick_s"] = self.paper_quick()
        report["loadavg_at_end"] = os.getloadavg()[0]
        report["loads"] = self.loads.to_dict()
        return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="minimal sizes, seconds; figures not judged")
    parser.add_argument("--steps", type=int, default=20, help="training steps per side and round")
    parser.add_argument("--repeats", type=int, default=5, help="measured rounds per comparison (after warm-up)")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--skip-runs", action="store_true", help="skip the cold/warm `ptpeft train` runs (~7 min)")
    parser.add_argument("--paper-quick", action="store_true",
                        help="also time `make paper-quick` (long; it rewrites docs/results.md)")
    parser.add_argument("--run-args", nargs="*", default=[], help="extra overrides for the timed `ptpeft train` runs")
    parser.add_argument("--out", default="outputs/bench", help="bench.json and the bench's data world")
    parser.add_argument("--doc", default=str(REPO / "docs" / "benchmarks.md"), help="the markdown file to update")
    args = parser.parse_args(argv)
    if not args.tiny and args.repeats < 5:
        parser.error("--repeats must be >= 5 (medians of fewer rounds on a shared machine mean little)")
    # Per-sample generation would draw a progress bar per image; runs in subprocesses get the env.
    generation.tqdm = functools.partial(generation.tqdm, disable=True)
    os.environ.setdefault("TQDM_DISABLE", "1")
    report = Bench(args).run()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=_plain))
    text = write_report(report, Path(args.doc))
    print(text)
    if args.tiny:
        shutil.rmtree(out / "data-tiny", ignore_errors=True)


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else str(value)


if __name__ == "__main__":
    main()
