"""The plan of a sweep: every job's stages, memory per GPU against the card, time and GPU-hours.

Input: the composed train config of every job (cli.sweep_jobs + compose_config, as `ptpeft train
-m` would run them). Shapes come from the meta device, so planning a 7B study takes seconds and
reads no weights or data. How the numbers are made: planning/estimate.py.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ptpeft_cli.errors import UserError
from ptpeft_cli.methods import get_method
from ptpeft_cli.models.real_size import real_checkpoints
from ptpeft_cli.planning import estimate as est
from ptpeft_cli.planning.measured import Measured, measured_rows
from ptpeft_cli.planning.shapes import Shapes, checkpoint_dir, meta_model, shapes
from ptpeft_cli.planning.sizes import Footprint, footprint, gpu_weight_bytes, method_for_label
from ptpeft_cli.tasks.sources import SOURCES
from ptpeft_cli.training.gpus import Gpu, find_gpu, gpu
from ptpeft_cli.training.stages import stage_cache_key

DEFAULT_GPU = "H100-SXM"


@dataclass
class StagePlan:
    name: str
    samples: int  # trained samples (steps x global batch x accumulation)
    footprint: Footprint
    memory: est.Estimate  # GiB per GPU
    fits: bool
    rate: est.Estimate | None  # samples/s per GPU
    seconds: float | None
    cached_from: int | None = None  # the job whose stage cache serves this stage
    fix: str | None = None  # what would make it fit
    lighter: Lighter | None = None  # with checkpointing on: the layout that fits without it


@dataclass(frozen=True)
class Lighter:
    """The largest micro-batch per GPU (same global batch) that fits without gradient checkpointing."""

    micro: int
    gib: float
    seconds: float | None  # the stage's time that way (by FLOPs)


@dataclass
class JobPlan:
    index: int
    overrides: list[str]
    label: str
    method: str  # the `method=` choice (pt_lora is method=pt_peft)
    seed: int
    task: str
    gpu: Gpu
    gpus: int
    micro: int  # samples per GPU per forward
    grad_accum: int
    checkpointing: bool
    stages: list[StagePlan]
    eval_examples: int | None
    eval_seconds: float | None
    extra_seconds: float | None  # analysis and retention (rank 0 only)
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return all(stage.fits for stage in self.stages)

    @property
    def hours(self) -> float | None:
        parts = [s.seconds for s in self.stages] + [self.eval_seconds, self.extra_seconds]
        return None if any(p is None for p in parts) else sum(parts) / 3600

    @property
    def gpu_hours(self) -> float | None:
        return None if self.hours is None else self.hours * self.gpus

    @property
    def extrapolated(self) -> bool:
        return any(s.rate is None or s.rate.source != "measured" for s in self.stages if s.cached_from is None)


SLURM_MARGIN = 1.2  # a SLURM time limit: the longest job's time plus 20%


@dataclass
class Plan:
    jobs: list[JobPlan]
    shapes: Shapes
    seq: int
    text_tokens: int
    notes: list[str]

    @property
    def known(self) -> list[JobPlan]:
        return [j for j in self.jobs if j.gpu_hours is not None]

    @property
    def gpu_hours(self) -> float:
        return sum(j.gpu_hours for j in self.known)

    @property
    def sequential_hours(self) -> float:
        """Wall clock of the jobs one after another (a plain `-m` sweep, torchrun)."""
        return sum(j.hours for j in self.known)

    @property
    def longest_hours(self) -> float:
        """Wall clock of the jobs all at once (a SLURM sweep with enough nodes)."""
        return max((j.hours for j in self.known), default=0.0)

    @property
    def slurm_timeout_min(self) -> int:
        return 30 * math.ceil(self.longest_hours * 60 * SLURM_MARGIN / 30)

    @property
    def misfits(self) -> list[tuple[JobPlan, StagePlan]]:
        return [(j, s) for j in self.jobs for s in j.stages if not s.fits]


def eval_examples(cfg: DictConfig) -> int | None:
    """The eval split's size: the limit, or the official release's count (None: unknown)."""
    source = SOURCES.get(str(cfg.task.dataset.kind))(cfg.task.dataset)
    split = str(cfg.task.eval_split or source.default_eval_split)
    published = source.published_rows(split)
    limit = cfg.task.eval_limit
    return published if limit is None else (int(limit) if published is None else min(int(limit), published))


# The method options that decide what trains (not rates, steps or labels): the footprint cache key.
SHAPE_KEYS = ("name", "train_vision", "lora", "adapter", "prefix", "stage2")


def method_key(method: object) -> str:
    plain = OmegaConf.to_container(OmegaConf.structured(method) if not isinstance(method, DictConfig) else method,
                                   resolve=True)
    return OmegaConf.to_yaml({key: plain[key] for key in SHAPE_KEYS})


_FOOTPRINTS: dict[tuple[str, str, int | None, int | None], Footprint] = {}


def _footprint(family: str, name: str, directory: Path, method: object, stage: int | None,
               weight_bytes: int | None = None) -> Footprint:
    """footprint(), once per checkpoint, method shape (`method_key`), stage and weight size."""
    key = (name, method_key(method), stage, weight_bytes)
    if key not in _FOOTPRINTS:
        _FOOTPRINTS[key] = footprint(family, meta_model(name, directory), method, stage, weight_bytes)
    return _FOOTPRINTS[key]


def weight_bytes(cfg: DictConfig) -> int:
    """Bytes per weight of the job on a GPU (`gpu_weight_bytes`)."""
    return gpu_weight_bytes(str(cfg.model.family), str(cfg.model.dtype), str(cfg.method.name))


def _stage_index(method: DictConfig | object, stage: str | None, steps: int = 1) -> int | None:
    """The index of stage `stage` (None: the last) of a multi-stage method; None for one stage."""
    names = [p.name for p in get_method(method.name).stages(method, steps)]  # type: ignore[attr-defined]
    if len(names) < 2:
        return None
    return names.index(stage) if stage in names else len(names) - 1


class Planner:
    """Plans jobs one by one, sharing shapes, footprints and measured rows between them."""

    def __init__(self, bench: str | None, text_tokens: int) -> None:
        self.rows = measured_rows(bench)
        self.text_tokens = text_tokens
        self.cache_keys: dict[str, int] = {}

    def _row_model(self, row: Measured) -> tuple[Shapes, Footprint, int] | None:
        """Shapes, footprint and sequence length of a measured row's setting (its method's defaults)."""
        return self._setting(str(row.get("checkpoint")), str(row.get("method")), row.get("stage") or None,
                             row.get("seq_len"))

    @cache  # noqa: B019 - one planner per command; the cache dies with it
    def _setting(self, checkpoint: str, label: str, stage: str | None, seq: int | None
                 ) -> tuple[Shapes, Footprint, int] | None:
        real = real_checkpoints().get(checkpoint)
        try:
            _, method = method_for_label(label)
        except UserError:  # a row of a method this install does not have
            return None
        if real is None:
            return None
        row_shapes = shapes(real.family, real.hub_id, real.directory)
        fp = _footprint(real.family, real.hub_id, real.directory, method, _stage_index(method, stage))
        return row_shapes, fp, int(seq or row_shapes.image_tokens + self.text_tokens)

    def row_flops(self, row: Measured) -> float:
        shape, fp, seq = self._row_model(row) or (None, None, 0)
        if shape is None:
            return 0.0
        return est.train_flops(shape, fp, seq, bool(row.get("gradient_checkpointing")))

    def row_is_full(self, row: Measured) -> bool:
        found = self._row_model(row)
        return found is not None and found[1].trainable > est.FULL_SHARE * found[1].total

    def anchor(self, stage: est.Stage, card: Gpu) -> Measured | None:
        usable = [r for r in self.rows if self._row_model(r) is not None]
        return est.anchor(stage, card, usable, self.row_is_full)

    def rate(self, stage: est.Stage, card: Gpu) -> est.Estimate | None:
        row = self.anchor(stage, card)
        return est.train_rate(stage, card, row, self.row_flops(row) if row else 0.0)

    def job(self, index: int, overrides: list[str], cfg: DictConfig) -> JobPlan:
        family = str(cfg.model.family)
        name, directory = checkpoint_dir(family, cfg.model)
        shape = shapes(family, name, directory)
        card = gpu(cfg.hardware.gpu_name or visible_gpu() or DEFAULT_GPU)
        gpus, batch, accum = int(cfg.hardware.gpus), int(cfg.trainer.batch_size), int(cfg.trainer.grad_accum)
        if gpus < 1:
            raise UserError(f"hardware.gpus={gpus} must be > 0")
        if batch % gpus:
            raise UserError(f"trainer.batch_size={batch} cannot be split over hardware.gpus={gpus} (it is the global "
                            f"batch); e.g. trainer.batch_size={batch * accum} trainer.grad_accum=1 keeps the "
                            f"{batch * accum} samples per step" if (batch * accum) % gpus == 0 else
                            f"trainer.batch_size={batch} cannot be split over hardware.gpus={gpus}; use a multiple of {gpus}")
        seq = shape.image_tokens + self.text_tokens
        method = get_method(str(cfg.method.name))
        plans = method.stages(cfg.method, int(cfg.trainer.max_steps))
        ckpt, fsdp = bool(cfg.model.gradient_checkpointing), str(cfg.hardware.distributed) == "fsdp"
        stages = []
        for i, plan in enumerate(plans):
            fp = _footprint(family, name, directory, cfg.method, i if len(plans) > 1 else None, weight_bytes(cfg))
            stage = est.Stage(shape, fp, str(cfg.method.label), plan.name if len(plans) > 1 else None, seq,
                              batch // gpus, ckpt, gpus, fsdp)
            stages.append(self._stage(stage, card, plan.max_steps * batch * accum, cfg, i, len(plans), index))
        examples = eval_examples(cfg)
        # Generation and analysis run the model forward only, whatever trained: one rate per checkpoint.
        frozen = dataclasses.replace(_footprint(family, name, directory, cfg.method, None, weight_bytes(cfg)),
                                     trainable=0, lora=0, lora_inputs=0)
        row = self.anchor(est.Stage(shape, frozen, "none", None, seq, batch // gpus, False, gpus, fsdp), card)
        achieved = None if row is None else (float(row.get("samples_per_s")) * self.row_flops(row)
                                             * card.bf16_tflops / float(row.peak_tflops))
        rate = est.eval_rate(shape, seq + int(cfg.task.max_new_tokens), card, self.rows, achieved)
        extra = 0
        if cfg.analysis.enabled and examples is not None:
            extra += 2 * min(int(cfg.analysis.max_rows), examples)  # tuned and pre-trained features
        if cfg.retention.enabled:
            extra += int(cfg.retention.limit) * max(0, len(cfg.retention.probes) - 1)  # the run's own task is skipped
        eval_s = None if rate is None or examples is None else examples / (rate.value * gpus)
        extra_s = None if rate is None else extra / rate.value
        return JobPlan(index, overrides, str(cfg.method.label), _method_yaml(cfg.method), int(cfg.trainer.seed),
                       str(cfg.task.name), card, gpus,
                       batch // gpus, accum, ckpt, stages, examples, eval_s, extra_s)

    def _stage(self, stage: est.Stage, card: Gpu, samples: int, cfg: DictConfig, index: int, n: int,
               job: int) -> StagePlan:
        memory = est.memory(stage, self.rows, _at)
        ok = est.fits(memory.value, card)
        rate = self.rate(stage, card)
        seconds = None if rate is None else samples / (rate.value * stage.gpus)
        cached = None
        key = stage_cache_key(cfg, get_method(str(cfg.method.name)), index, n)
        if key is not None:
            cached = self.cache_keys.get(key)
            self.cache_keys.setdefault(key, job)
        if cached is not None:  # not trained here: neither its memory nor its time count
            return StagePlan(stage.stage or stage.method, samples, stage.footprint, memory, True, rate, 0.0, cached)
        effective = int(cfg.trainer.batch_size) * int(cfg.trainer.grad_accum)

        def gib(candidate: est.Stage) -> float:
            return est.memory(candidate, self.rows, _at).value

        return StagePlan(stage.stage or stage.method, samples, stage.footprint, memory, ok, rate, seconds, None,
                         None if ok else fix(stage, card, effective, gib),
                         lighter(stage, card, effective, gib, seconds) if stage.checkpointing else None)


def _method_yaml(method: DictConfig) -> str:
    """The `method=` choice that gives this label (pt_lora -> pt_peft); the name for a label of one's own."""
    try:
        return method_for_label(str(method.label))[0]
    except UserError:
        return str(method.name)


def visible_gpu() -> str | None:
    """The table's name for this machine's first CUDA device, if it is a known card (torch's own
    name may carry words `gpu()` refuses from a user)."""
    import torch

    if not torch.cuda.is_available():
        return None
    found = find_gpu(torch.cuda.get_device_name(0))
    return found.name if found else None


def _at(stage: est.Stage, micro: int, seq: int) -> est.Stage:
    return dataclasses.replace(stage, micro=micro, seq=seq, gpus=1, fsdp=False)


def lighter(stage: est.Stage, card: Gpu, effective: int, gib: Callable[[est.Stage], float],
            seconds: float | None) -> Lighter | None:
    """The largest micro-batch per GPU, halving from the stage's, that fits without checkpointing."""
    micro = stage.micro
    while micro >= 1:
        if (effective // stage.gpus) % micro == 0:
            candidate = dataclasses.replace(stage, micro=micro, checkpointing=False)
            need = gib(candidate)
            if est.fits(need, card):
                ratio = est.train_flops(stage.shapes, stage.footprint, stage.seq, False) / est.train_flops(
                    stage.shapes, stage.footprint, stage.seq, True)
                return Lighter(micro, need, None if seconds is None else seconds * ratio)
        micro //= 2
    return None


def fix(stage: est.Stage, card: Gpu, effective: int, gib: Callable[[est.Stage], float]) -> str:
    """The first change that makes `stage` fit `card`: checkpointing, a smaller micro-batch with
    more accumulation (same global batch), FSDP over more GPUs (full fine-tuning), else the card needed."""
    tries = [] if stage.checkpointing else [(stage.micro, True)]
    micro = stage.micro // 2
    while micro >= 1:
        tries += [(micro, stage.checkpointing)] + ([] if stage.checkpointing else [(micro, True)])
        micro //= 2
    for micro, ckpt in tries:
        if (effective // stage.gpus) % micro:
            continue
        need = gib(dataclasses.replace(stage, micro=micro, checkpointing=ckpt))
        if est.fits(need, card):
            parts = ["model.gradient_checkpointing=true"] if ckpt and not stage.checkpointing else []
            if micro != stage.micro:
                parts += [f"trainer.batch_size={micro * stage.gpus}", f"trainer.grad_accum={effective // (micro * stage.gpus)}"]
            return f"{' '.join(parts)} ({need:.1f} GiB)"
    if stage.full:
        for gpus in (2, 4, 8, 16, 32):  # the same GPUs sharded first, then more
            if (gpus > stage.gpus or (gpus == stage.gpus and not stage.fsdp)) and effective % gpus == 0:
                sharded = dataclasses.replace(stage, gpus=gpus, fsdp=True, micro=min(stage.micro, effective // gpus),
                                              checkpointing=True)
                need = gib(sharded)
                if est.fits(need, card):
                    return (f"{gpus} GPUs with hardware.distributed=fsdp trainer.checkpoint_every=0 "
                            f"model.gradient_checkpointing=true ({need:.1f} GiB per GPU)")
    smallest = gib(dataclasses.replace(stage, micro=1, checkpointing=True))
    return f"no layout tried fits; the smallest (1 per GPU, checkpointing) needs {smallest:.1f} GiB: a card with " \
           f"{smallest / est.USABLE:.0f} GiB or more"


def plan(jobs: list[tuple[list[str], DictConfig]], bench: str | None = None, text_tokens: int = 64) -> Plan:
    if not jobs:
        raise UserError("nothing to plan: the overrides select no job")
    planner = Planner(bench, text_tokens)
    planned = [planner.job(i, overrides, cfg) for i, (overrides, cfg) in enumerate(jobs)]
    first = jobs[0][1]
    shape = shapes(str(first.model.family), *checkpoint_dir(str(first.model.family), first.model))
    notes = []
    if not first.hardware.gpu_name:
        notes.append(f"hardware.gpu_name not set: planned for {visible_gpu() or DEFAULT_GPU}"
                     + (" (the GPU visible here)" if visible_gpu() else ""))
    return Plan(planned, shape, shape.image_tokens + text_tokens, text_tokens, notes)
