"""What a training stage achieved in the units people compare across setups: tokens/s, model
TFLOP/s and MFU against the GPU's bf16 peak, and peak memory. docs/benchmarks.md repeats the
definitions:

- **tokens**: the non-padding positions of `input_ids` (its attention mask), image placeholder
  tokens included (LLaVA's 576 per image, Qwen2-VL's image pads, BLIP-2's query slots); prefix
  vectors and image tokens a model adds inside (GIT) are not counted.
- **model FLOPs**: the matmul FLOPs (linear, matmul, conv, attention) of a training step as autograd
  runs it, counted with torch's FLOP formulas (`torch.utils.flop_counter`) on the stage's first step: the
  forward, plus a backward only where gradients are needed (a frozen weight gets no
  weight-gradient matmul; a frozen vision tower runs forward only), padding included, gradient
  checkpointing's recompute and fused attention's recompute of its score matrix excluded (MFU, not
  hardware FLOPs utilisation: an eager and a fused attention count the same). A stage's FLOPs are
  that step's FLOPs per token times its tokens. Counted, not PaLM's 6·N·tokens, because that
  formula credits a parameter-efficient step with weight gradients it never computes.
- **MFU**: model FLOP/s over the card's dense bf16 peak (training/gpus.py's table; times the number of
  processes of a multi-GPU job, whose samples, tokens and FLOPs count all ranks); absent for a card
  the table does not know (`make bench-gpu` then measures a bf16 matmul instead).
- **warm**: a stage's steps after the first (the first pays allocator growth, kernel selection and
  the FLOP count; with `hardware.compile` the second pays compilation), the figures MFU uses.
"""

from __future__ import annotations

import contextlib
import functools
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptpeft_cli.training.gpus import peak_bf16_tflops

GIB = 1024**3


def device_peak_tflops(device: torch.device) -> float | None:
    return peak_bf16_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None


def batch_tokens(batch: Any) -> int:
    """Non-padding input tokens of a model-input batch (0 for other batches, e.g. pre-training's)."""
    if not isinstance(batch, dict) or "input_ids" not in batch:
        return 0
    mask = batch.get("attention_mask")
    return int(mask.sum()) if torch.is_tensor(mask) else int(batch["input_ids"].numel())


# --- FLOPs ---------------------------------------------------------------------------------------
def _attention_formulas() -> dict[Any, Any]:
    """torch's FLOP table, adjusted for fused attention: its backward formulas include recomputing
    the T x T score matrix, which these kernels do instead of storing it (hardware FLOPs, as
    checkpointing's recompute is), so that term is taken out; and CPU's fused kernels, absent from
    the table, get the CUDA flash kernel's formulas (same matmuls, same argument order). An eager
    attention step and a fused one then count the same."""
    from torch.utils.flop_counter import flop_registry

    aten = torch.ops.aten
    backward = {"_scaled_dot_product_flash_attention_backward": None,
                "_scaled_dot_product_efficient_attention_backward": None,
                "_scaled_dot_product_cudnn_attention_backward": None,
                "_scaled_dot_product_flash_attention_for_cpu_backward": "_scaled_dot_product_flash_attention_backward"}
    formulas: dict[Any, Any] = {}
    for name, twin in backward.items():
        table = getattr(aten, twin or name, None)
        if hasattr(aten, name) and table in flop_registry:
            formulas[getattr(aten, name)] = _raw(functools.partial(_without_score_recompute, flop_registry[table]))
    cpu_forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_forward is not None and aten._scaled_dot_product_flash_attention in flop_registry:
        formulas[cpu_forward] = _raw(functools.partial(flop_registry[aten._scaled_dot_product_flash_attention]))
    return formulas


def _raw(formula: Any) -> Any:
    formula._get_raw = True  # takes the op's tensors itself (the table's formulas already do)
    return formula


def _without_score_recompute(formula: Any, grad_out: Any, query: Any, key: Any, value: Any, *args: Any,
                             **kwargs: Any) -> int:
    flops = formula(grad_out, query, key, value, *args, **kwargs)
    if torch.is_tensor(query) and query.dim() == 4:  # (batch, heads, tokens, head dim)
        batch, heads, q_len, dim = query.shape
        flops -= 2 * batch * heads * q_len * key.shape[-2] * dim
    return flops


def _recompute_uncounted() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    """`context_fn` of torch's non-reentrant checkpoint: the forward runs as usual, its recompute
    in backward with the dispatch modes (the FLOP counter) switched off."""
    from torch.utils._python_dispatch import _disable_current_modes

    return contextlib.nullcontext(), _disable_current_modes()


class FlopCounter:
    """Sums torch's FLOP formulas (torch.utils.flop_counter's table, `_attention_formulas`
    adjustments) over the ops dispatched while active. Written here instead of using
    `FlopCounterMode` itself because that one also tracks modules with autograd hooks, which
    reorder gradient accumulation and change the step's numbers in the last bit; observing the
    dispatched ops changes nothing."""

    def __init__(self) -> None:
        from torch.utils.flop_counter import flop_registry

        self.formulas = {**flop_registry, **_attention_formulas()}
        self.flops: int | None = 0

    def get_total_flops(self) -> int | None:
        """None if a formula failed on an op it did not expect: no figure rather than a wrong one
        (and never a failed training step)."""
        return self.flops

    def mode(self) -> Any:
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Counting(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                formula = counter.formulas.get(getattr(func, "_overloadpacket", func))
                if formula is not None and counter.flops is not None:
                    try:
                        counter.flops += int(formula(*args, **kwargs, out_val=out))
                    except Exception:  # noqa: BLE001 - e.g. a layout the formula does not know
                        counter.flops = None
                return out

        return Counting()


@contextlib.contextmanager
def counting_flops(model: nn.Module) -> Iterator[FlopCounter]:
    """Count the model FLOPs of what runs inside (one training step); read
    `counter.get_total_flops()` afterwards. Layers that transformers checkpoints get the counter
    switched off for their recompute; a compiled model runs this step eagerly (the compiled
    kernels are invisible to the counter). Numerics are untouched: the counter only observes."""
    patched = {}
    for module in model.modules():
        checkpoint_fn = getattr(module, "_gradient_checkpointing_func", None)  # transformers' GC layers
        if isinstance(checkpoint_fn, functools.partial) and checkpoint_fn.keywords.get("use_reentrant") is False:
            patched[module] = checkpoint_fn
            module._gradient_checkpointing_func = functools.partial(checkpoint_fn, context_fn=_recompute_uncounted)
    set_stance = getattr(torch.compiler, "set_stance", None)
    eager = set_stance("force_eager") if set_stance else contextlib.nullcontext()
    counter = FlopCounter()
    try:
        with eager, counter.mode():
            yield counter
    finally:
        for module, checkpoint_fn in patched.items():
            module._gradient_checkpointing_func = checkpoint_fn


# --- memory --------------------------------------------------------------------------------------
def _rss_peak_gib() -> float:
    """This process's peak resident memory: VmHWM (resettable) on Linux, else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # KiB on Linux


def reset_peak_memory(device: torch.device) -> None:
    """Start measuring peaks anew (a run's own, not an earlier run's in the same process)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, nothing else


def peak_memory(device: torch.device) -> dict[str, float]:
    """`peak_rss_gib` always; on CUDA also `peak_gpu_gib` (allocated) and `peak_gpu_reserved_gib`
    (what the caching allocator held), since the last reset."""
    peaks = {"peak_rss_gib": _rss_peak_gib()}
    if device.type == "cuda":
        peaks["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / GIB
        peaks["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved(device) / GIB
    return peaks


# --- a stage's figures ---------------------------------------------------------------------------
@dataclass
class StageMeter:
    """Samples, tokens and time of a stage, for the whole stage and its warm part (the steps after
    `warm_after`), and the model FLOPs per token counted on its first step."""

    device: torch.device
    warm_after: int = 1
    samples: int = 0
    tokens: int = 0
    steps: int = 0
    warm_start: float | None = None
    warm_samples: int = 0
    warm_tokens: int = 0
    flops_per_token: float | None = None
    start: float = field(default_factory=time.perf_counter)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step_done(self, samples: int, tokens: int) -> None:
        """After each optimizer step; the first step and the one that ends the warm-up wait for the
        device (so that their ends are real), the others do not."""
        self.samples, self.tokens, self.steps = self.samples + samples, self.tokens + tokens, self.steps + 1
        if self.warm_start is not None:
            self.warm_samples += samples
            self.warm_tokens += tokens
        elif self.steps in (1, self.warm_after):
            self.sync()
            if self.steps == self.warm_after:
                self.warm_start = time.perf_counter()

    def counted(self, flops: int | None, tokens: int) -> None:
        self.flops_per_token = flops / tokens if flops is not None and tokens else None

    def result_fields(self) -> dict[str, Any]:
        """The stage's figures for StageResult, after its last step."""
        self.sync()
        end = time.perf_counter()
        return {"tokens": self.tokens, "warm_seconds": end - self.warm_start if self.warm_start else 0.0,
                "warm_samples": self.warm_samples, "warm_tokens": self.warm_tokens,
                "flops_per_token": self.flops_per_token, "memory": peak_memory(self.device)}


def throughput_metrics(results: list[Any], peak: float | None) -> dict[str, float]:
    """`throughput/*` and `memory/*` metrics of a run's stages (StageResults): per stage, then for
    the run (tokens over all stages; TFLOP/s and, given the card's `peak` TFLOP/s, MFU over the
    warm steps of the stages with a FLOP count)."""
    metrics: dict[str, float] = {}
    flops = warm_s = tokens = seconds = 0.0
    for r in results:
        tokens, seconds = tokens + r.tokens, seconds + r.seconds
        if r.tokens and r.seconds > 0:
            metrics[f"throughput/train_tokens_per_s/{r.name}"] = r.tokens / r.seconds
        if r.warm_seconds > 0:
            metrics[f"throughput/warm_samples_per_s/{r.name}"] = r.warm_samples / r.warm_seconds
            if r.warm_tokens:
                metrics[f"throughput/warm_tokens_per_s/{r.name}"] = r.warm_tokens / r.warm_seconds
            if r.flops_per_token is not None:
                stage_flops = r.flops_per_token * r.warm_tokens
                metrics[f"throughput/tflops/{r.name}"] = stage_flops / r.warm_seconds / 1e12
                if peak:
                    metrics[f"throughput/mfu/{r.name}"] = stage_flops / r.warm_seconds / (peak * 1e12)
                flops, warm_s = flops + stage_flops, warm_s + r.warm_seconds
        for key, value in (r.memory or {}).items():
            metrics[f"memory/{key}/{r.name}"] = value
    if tokens and seconds > 0:
        metrics["throughput/tokens_per_s"] = tokens / seconds
    if warm_s > 0:
        metrics["throughput/tflops"] = flops / warm_s / 1e12
        if peak:
            metrics["throughput/mfu"] = flops / warm_s / (peak * 1e12)
    return metrics
