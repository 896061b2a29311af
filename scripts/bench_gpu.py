"""`make bench-gpu`: ptpeft's own `train` path on real-size checkpoints on one GPU, against a bare loop.

For each checkpoint (by hub id: random weights of the exact real shapes, built offline by
scripts/bench_checkpoints.py) and each method, side by side and interleaved (ptpeft first for even
methods, the bare loop first for odd ones, alternating per round):

- **ptpeft**: a whole `ptpeft train` run in this process (`run_training`: loading, cached images,
  DataLoader, every stage, evaluation, saving), VQA on the synthetic world at 336 pixels,
  representation analysis and retention off, `hardware.count_flops=true`;
- **bare**: what a user writes by hand with transformers + peft on the same checkpoint: the
  family's `from_pretrained`, the method's own setup (peft's LoRA for lora), then zero_grad /
  autocast forward / backward / torch's default AdamW over the same batches, already on the GPU.

Per stage (training/throughput.py defines the figures): warm samples/s and tokens/s (the steps
after the first), model TFLOP/s and MFU against the card's bf16 peak (its table, else a measured
bf16 matmul), peak GPU memory allocated and reserved, time to the first step, eval examples/s,
and the ratio to the bare loop. Rows go to `outputs/bench/gpu.json` (rewritten after every
method, so a run cut short keeps what it measured) and the GPU block of docs/benchmarks.md.

`--levers`: each speed lever off and on (interleaved) for one checkpoint and method.
`--tiny`: the same code on scaled-down checkpoints on the CPU (the test suite runs it).
`--report FILE`: only render the docs block from a gpu.json (e.g. one a GPU session sent back).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from bench_checkpoints import build_checkpoint
from bench_gpu_report import write_gpu_report
from bench_measure import commit, interleaved, machine, paired_ratios

from ptpeft_cli.cli import compose_config
from ptpeft_cli.commands.train import run_training
from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.base import freeze_all, model_config_for
from ptpeft_cli.models import get_family
from ptpeft_cli.models.real_size import build_model, real_checkpoint
from ptpeft_cli.tasks import get_task
from ptpeft_cli.training.batches import train_loader, with_cached_images
from ptpeft_cli.training.gpus import peak_bf16_tflops
from ptpeft_cli.training.hardware import resolve_hardware, seed_everything
from ptpeft_cli.training.loop import to_device
from ptpeft_cli.training.throughput import GIB

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = "llava-hf/llava-1.5-7b-hf,Qwen/Qwen2-VL-2B-Instruct,Qwen/Qwen2-VL-7B-Instruct,Salesforce/blip2-opt-2.7b"
# LoRA and PT-LoRA (the targets) first, full (the longest: it saves every weight) last.
METHODS = "none,lora,pt_peft,prefix,adapter,pt_adapter,full"


@dataclasses.dataclass
class Settings:
    steps: int = 8  # per stage and side; the first is warm-up
    batch_size: int = 16
    eval_examples: int = 32
    repeats: int = 1  # rounds per side (the ratio is the median of per-round ratios)
    image_size: int = 336  # synthetic images: LLaVA 576 image tokens, Qwen2-VL 144, BLIP-2 32 queries
    gc_methods: tuple[str, ...] = ("full",)  # methods run with model.gradient_checkpointing=true
    compile_backend: str = "inductor"  # the `compile` lever's backend


TINY = Settings(steps=3, batch_size=4, eval_examples=4, image_size=56, compile_backend="eager")

# lever -> (overrides with it on, overrides with it off); each isolates one switch.
LEVERS: dict[str, tuple[list[str], list[str]]] = {
    "fused_adamw": (["hardware.fused_adamw=true", "hardware.defer_sync=false"],
                    ["hardware.fused_adamw=false", "hardware.defer_sync=false"]),
    "defer_sync": (["hardware.fused_adamw=true", "hardware.defer_sync=true"],
                   ["hardware.fused_adamw=true", "hardware.defer_sync=false"]),
    "sdpa_attention": (["model.attn_implementation=sdpa"], ["model.attn_implementation=eager"]),
    "compile": (["hardware.compile={backend}"], ["hardware.compile=null"]),
    "dataloader_workers": (["trainer.num_workers=2"], ["trainer.num_workers=0"]),
    "gradient_checkpointing": (["model.gradient_checkpointing=true"], ["model.gradient_checkpointing=false"]),
}


def _median(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class GpuBench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.tiny, self.work = args, args.tiny, work
        self.settings = TINY if args.tiny else Settings(steps=args.steps, batch_size=args.batch_size,
                                                          eval_examples=args.eval_examples, repeats=args.repeats)
        self.device = resolve_hardware("cpu" if args.tiny else "auto", "auto").device
        self.cuda = self.device.type == "cuda"
        self.out = Path(args.out) / "gpu.json"
        self.report: dict[str, Any] = self._start_report()

    # --- the report file ---------------------------------------------------------------------
    def _start_report(self) -> dict[str, Any]:
        old = json.loads(self.out.read_text()) if self.args.append and self.out.exists() else {}
        return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit(REPO),
                "machine": self.machine(), "settings": {**dataclasses.asdict(self.settings), "tiny": self.tiny},
                "rows": old.get("rows", []), "levers": old.get("levers", []), "failures": old.get("failures", [])}

    def save(self, key: str, entries: list[dict[str, Any]], same: tuple[str, ...]) -> None:
        """Replace earlier entries of the same (checkpoint, method, ...) and write gpu.json atomically."""
        done = {tuple(e.get(k) for k in same) for e in entries}
        self.report[key] = [e for e in self.report[key] if tuple(e.get(k) for k in same) not in done] + entries
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.report, indent=2))
        os.replace(tmp, self.out)

    def machine(self) -> dict[str, Any]:
        import peft
        import transformers

        info = {**machine(), "transformers": transformers.__version__, "peft": peft.__version__,
                "gpu": None, "peak_bf16_tflops": None, "peak_source": None}
        if self.cuda:
            name = torch.cuda.get_device_name(self.device)
            measured, table = matmul_tflops(self.device), peak_bf16_tflops(name)
            info.update(gpu=name, cuda=torch.version.cuda, measured_matmul_tflops=measured,
                        gpu_memory_gib=torch.cuda.get_device_properties(self.device).total_memory / GIB,
                        peak_bf16_tflops=table or measured, peak_source="table" if table else "measured matmul")
        return info

    # --- one side each ---------------------------------------------------------------------------
    def overrides(self, hub_id: str, path: Path, method: str, extra: list[str] = ()) -> list[str]:
        s = self.settings
        return [f"model={real_checkpoint(hub_id).family}", f"model.name_or_path={path}",
                f"model.gradient_checkpointing={method in s.gc_methods}", f"method={method}", "task=vqa",
                f"task.dataset.root={self.work / 'data'}", f"task.dataset.image_size={s.image_size}",
                f"task.dataset.n_train={max(8, s.steps * s.batch_size // 2)}", "task.dataset.n_val=2",
                f"task.dataset.n_test={max(4, s.eval_examples // 2)}", f"task.eval_limit={s.eval_examples}",
                f"trainer.max_steps={s.steps}", f"trainer.batch_size={s.batch_size}",
                f"trainer.eval_batch_size={s.batch_size}", f"trainer.log_every={s.steps}", "trainer.on_nonfinite=skip",
                "analysis.enabled=false", "retention.enabled=false", "logger=none", "hardware.count_flops=true",
                f"hardware.device={self.device.type}", f"output_root={self.work / 'outputs'}", *extra]

    def ptpeft_run(self, overrides: list[str]) -> dict[str, Any]:
        """One whole `ptpeft train` run, its stage cache fresh (every stage trained), its run dir
        removed afterwards (a full run at real size writes tens of GB)."""
        name = uuid.uuid4().hex[:8]
        run_dir, cache = self.work / "runs" / name, self.work / "stage-cache" / name
        self.free()  # the caching allocator gives back what the other side held: peaks are this run's
        try:
            return run_training(compose_config("train", [*overrides, f"stage_cache_dir={cache}"]), run_dir)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
            self.free()

    def bare_run(self, overrides: list[str]) -> dict[str, float]:
        """Warm samples/s per stage of a hand-written loop on the same checkpoint and batches."""
        try:
            return self._bare_stages(compose_config("train", overrides))
        finally:
            self.free()  # after the model and batches went out of scope

    def _bare_stages(self, cfg: Any) -> dict[str, float]:
        hardware = resolve_hardware(cfg.hardware.device, cfg.hardware.precision)
        seed_everything(int(cfg.trainer.seed))
        task, method = get_task(cfg.task, cfg.model.instructions), get_method(cfg.method.name)
        loaded = get_family(cfg.model.family).load(model_config_for(cfg.model, method, warn=False))  # as ptpeft's
        data = with_cached_images(loaded, task.load())
        loader = train_loader(loaded, task, data, cfg.trainer, pin_memory=self.cuda)
        batches = [to_device(batch, self.device) for batch, _ in zip(loader, range(self.settings.steps), strict=False)]
        freeze_all(loaded.model)
        rates = {}
        for index, plan in enumerate(method.stages(cfg.method, self.settings.steps)):
            method.setup_stage(loaded, cfg.method, index)
            model = loaded.model.to(self.device)
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=plan.lr)
            rates[plan.name] = self.bare_loop(model, optimizer, batches, hardware)
        return rates

    def bare_loop(self, model: Any, optimizer: Any, batches: list[dict[str, Any]], hardware: Any) -> float:
        model.train()
        start, samples = 0.0, 0
        for step in range(self.settings.steps):
            if step == 1:  # the first step is warm-up, as ptpeft's warm figures exclude it
                self.sync()
                start = time.perf_counter()
            batch = batches[step % len(batches)]
            optimizer.zero_grad(set_to_none=True)
            with hardware.autocast():
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            samples += int(batch["input_ids"].shape[0]) if step else 0
        self.sync()
        model.eval()
        return samples / (time.perf_counter() - start)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    # --- rows ----------------------------------------------------------------------------------
    def method_rows(self, hub_id: str, path: Path, method: str, index: int) -> list[dict[str, Any]]:
        s, overrides = self.settings, self.overrides(hub_id, path, method)
        cfg = compose_config("train", overrides)
        stages = [plan.name for plan in get_method(cfg.method.name).stages(cfg.method, s.steps)]
        ptpeft: list[dict[str, Any]] = []
        bare: list[dict[str, float]] = []
        last = f"throughput/warm_samples_per_s/{stages[-1]}" if stages else ""

        def ptpeft_side() -> float:
            ptpeft.append(self.ptpeft_run(overrides))
            return float(ptpeft[-1].get(last) or 0.0)

        def bare_side() -> float:
            bare.append(self.bare_run(overrides))
            return bare[-1][stages[-1]]

        sides = {"ptpeft": ptpeft_side, "bare": bare_side} if stages else {"ptpeft": ptpeft_side}
        if index % 2:
            sides = dict(reversed(list(sides.items())))
        interleaved(sides, s.repeats, warmup=0)
        memory = "peak_gpu_gib" if self.cuda else "peak_rss_gib"

        def figure(key: str) -> float | None:
            return _median([run.get(key) for run in ptpeft])

        rows = []
        for stage in stages or [None]:
            suffix = f"/{stage}" if stage else ""
            samples, tokens = figure(f"throughput/warm_samples_per_s{suffix}"), figure(f"throughput/warm_tokens_per_s{suffix}")
            tflops, peak = figure(f"throughput/tflops{suffix}"), self.report["machine"]["peak_bf16_tflops"]
            bare_rates = [rates.get(stage) for rates in bare] if stage else []
            pairs = [(run.get(f"throughput/warm_samples_per_s{suffix}"), rate)
                     for run, rate in zip(ptpeft, bare_rates, strict=False)]
            pairs = [(a, b) for a, b in pairs if a and b]
            rows.append({"family": real_checkpoint(hub_id).family, "checkpoint": hub_id, "method": cfg.method.label,
                         "stage": stage if len(stages) > 1 else None, "batch_size": s.batch_size,
                         "seq_len": tokens / samples if tokens and samples else None,
                         "gradient_checkpointing": bool(cfg.model.gradient_checkpointing),
                         "precision": resolve_hardware(self.device.type, "auto").precision,
                         "samples_per_s": samples, "tokens_per_s": tokens, "tflops": tflops,
                         "mfu": tflops / peak if tflops and peak and self.cuda else None,
                         "peak_mem_gib": figure(f"memory/{memory}{suffix}") or figure(f"memory/{memory}"),
                         "peak_reserved_gib": figure(f"memory/peak_gpu_reserved_gib{suffix}") if self.cuda else None,
                         "time_to_first_step_s": figure("time/first_step_s"),
                         "eval_examples_per_s": figure("throughput/eval_examples_per_s"),
                         "bare_samples_per_s": _median(bare_rates),
                         "ratio_vs_bare": paired_ratios(*zip(*pairs, strict=True)).median if pairs else None,
                         "steps": s.steps, "rounds": len(ptpeft), "device": self.device.type,
                         "size": "tiny" if self.tiny else "real"})
        return rows

    def lever_rows(self, hub_id: str, path: Path, method: str, levers: list[str]) -> list[dict[str, Any]]:
        """Each lever off and on (interleaved), ptpeft's path both times: warm samples/s of the
        method's last stage, peak memory and time to first step on each side."""
        rows, memory = [], "peak_gpu_gib" if self.cuda else "peak_rss_gib"
        method_cfg = compose_config("train", self.overrides(hub_id, path, method)).method
        plans = get_method(method_cfg.name).stages(method_cfg, self.settings.steps)
        key = f"throughput/warm_samples_per_s/{plans[-1].name}"
        for name in levers:
            on, off = ([o.format(backend=self.settings.compile_backend) for o in side] for side in LEVERS[name])
            runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}

            def side(label: str, extra: list[str], runs: dict[str, list[dict[str, Any]]] = runs) -> float:
                metrics = self.ptpeft_run(self.overrides(hub_id, path, method, extra))
                runs[label].append(metrics)
                return float(metrics.get(key) or 0.0)

            interleaved({"on": functools.partial(side, "on", on), "off": functools.partial(side, "off", off)},
                        self.settings.repeats, warmup=0)
            pairs = [(a.get(key), b.get(key)) for a, b in zip(runs["on"], runs["off"], strict=True)]
            pairs = [(a, b) for a, b in pairs if a and b]
            figures = {f"{label}_{what}": _median([run.get(k) for run in runs[label]]) for label in ("on", "off")
                       for what, k in (("samples_per_s", key), ("peak_mem_gib", f"memory/{memory}"),
                                       ("time_to_first_step_s", "time/first_step_s"))}
            rows.append({"lever": name, "checkpoint": hub_id, "method": method_cfg.label, "stage": plans[-1].name, "on": on,
                         "off": off, **figures, "ratio_on_off": paired_ratios(*zip(*pairs, strict=True)).median if pairs else None,
                         "device": self.device.type, "size": "tiny" if self.tiny else "real"})
        return rows

    # --- all ---------------------------------------------------------------------------------
    def checkpoint(self, hub_id: str) -> Path | None:
        """Build the checkpoint, or record why not (too little disk for a real-size one)."""
        path = self.work / "checkpoints" / hub_id.replace("/", "--")
        if not self.tiny:
            params = sum(p.numel() for p in build_model(hub_id).parameters())
            free = shutil.disk_usage(self.work).free
            if free < 2.2 * params + 2 * GIB:
                self.fail(hub_id, "*", f"{free / GIB:.0f} GiB free, a bf16 copy needs {2 * params / GIB:.0f} GiB")
                return None
        start = time.perf_counter()
        try:
            build_checkpoint(hub_id, path, tiny=self.tiny, device=self.device)
        except Exception as error:  # noqa: BLE001 - e.g. an architecture without a processor recipe
            self.fail(hub_id, "*", f"checkpoint not built: {type(error).__name__}: {str(error).strip()[:300]}")
            shutil.rmtree(path, ignore_errors=True)
            return None
        print(f"[bench-gpu] {hub_id}: checkpoint built in {time.perf_counter() - start:.0f} s", flush=True)
        return path

    def fail(self, hub_id: str, method: str, why: str) -> None:
        print(f"[bench-gpu] {hub_id} {method}: {why}", file=sys.stderr, flush=True)
        self.save("failures", [{"checkpoint": hub_id, "method": method, "error": why}], ("checkpoint", "method"))

    def run(self) -> None:
        methods = [m for m in self.args.methods.split(",") if m]
        for hub_id in [c for c in self.args.checkpoints.split(",") if c]:
            path = self.checkpoint(hub_id)
            if path is None:
                continue
            try:
                if self.args.levers:
                    self.save("levers", self.lever_rows(hub_id, path, methods[0], self.args.lever_list.split(",")),
                              ("lever", "checkpoint", "method", "size"))
                    continue
                for index, method in enumerate(methods):
                    try:
                        rows = self.method_rows(hub_id, path, method, index)
                        self.report["failures"] = [f for f in self.report["failures"]  # an earlier attempt's
                                                   if (f["checkpoint"], f["method"]) != (hub_id, method)]
                        self.save("rows", rows, ("checkpoint", "method", "stage", "size"))
                        print(f"[bench-gpu] {hub_id} {method}: done", flush=True)
                    except Exception as error:  # noqa: BLE001 - one method failing (e.g. out of memory) is a figure too
                        self.fail(hub_id, method, f"{type(error).__name__}: {str(error).strip()[:300]}")
                        self.free()
            finally:
                shutil.rmtree(path, ignore_errors=True)  # 14 GB for a 7B: one family at a time


def matmul_tflops(device: torch.device, n: int = 8192, iterations: int = 20) -> float:
    """A bf16 n x n matmul's throughput: the card's practical peak, for cards not in the table."""
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * n**3 * iterations / (time.perf_counter() - start) / 1e12


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="scaled-down checkpoints on the CPU (test size)")
    parser.add_argument("--checkpoints", default=CHECKPOINTS, help="hub ids with a shipped config, comma-separated")
    parser.add_argument("--methods", default=METHODS, help="method configs, comma-separated (--levers: the first)")
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--batch-size", type=int, default=Settings.batch_size)
    parser.add_argument("--eval-examples", type=int, default=Settings.eval_examples)
    parser.add_argument("--repeats", type=int, default=Settings.repeats)
    parser.add_argument("--levers", action="store_true", help="measure each speed lever off and on instead")
    parser.add_argument("--lever-list", default=",".join(LEVERS), help=f"levers to measure: {', '.join(LEVERS)}")
    parser.add_argument("--append", action="store_true", help="keep the rows of other checkpoints/methods in gpu.json")
    parser.add_argument("--out", default="outputs/bench", help="directory of gpu.json")
    parser.add_argument("--doc", default=str(REPO / "docs" / "benchmarks.md"), help="markdown file to update ('' = none)")
    parser.add_argument("--work", default=None, help="checkpoints, data and runs (default: a temp dir, removed)")
    parser.add_argument("--report", metavar="GPU_JSON", help="only write the docs block from this gpu.json")
    args = parser.parse_args(argv)
    if args.report:
        write_gpu_report(json.loads(Path(args.report).read_text()), Path(args.doc))
        return
    if not args.tiny and not torch.cuda.is_available():
        parser.error("real-size checkpoints need a CUDA GPU; use --tiny on a CPU")
    unknown = [lever for lever in args.lever_list.split(",") if lever not in LEVERS]
    if unknown:
        parser.error(f"unknown lever(s) {', '.join(unknown)}; known: {', '.join(LEVERS)}")
    os.environ.setdefault("TQDM_DISABLE", "1")
    if args.tiny:  # toy shapes gain nothing from a second thread, and on a shared CPU it costs several times
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="ptpeft-bench-gpu-", dir=args.work) as work:
        bench = GpuBench(args, Path(work))
        bench.run()
    if args.doc:
        print(write_gpu_report(bench.report, Path(args.doc)))


if __name__ == "__main__":
    main()
