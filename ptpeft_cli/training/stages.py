"""A method's stages in order, with the two ways a stage is not trained from scratch: a cached
stage (PT-PEFT's stage 1, shared by sweeps) is loaded, and a resumed run continues from its last
checkpoint exactly where it stopped."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ptpeft_cli import rundir, storage
from ptpeft_cli.methods.base import (
    Method,
    count_parameters,
    model_config_for,
    trainable_bytes,
    trainable_state_dict,
)
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.tasks.base import Task, TaskData
from ptpeft_cli.training import checkpoint as ckpt
from ptpeft_cli.training import stage_cache
from ptpeft_cli.training.batches import train_loader
from ptpeft_cli.training.distributed import Distributed
from ptpeft_cli.training.hardware import Hardware, compiled, seed_everything, stage_seed
from ptpeft_cli.training.loop import StageResult, resumable_sampler, run_stage
from ptpeft_cli.training.run_logger import RunLogger
from ptpeft_cli.training.timing import Stopwatch

log = logging.getLogger("ptpeft")


def train_stages(cfg: DictConfig, method: Method, task: Task, loaded: LoadedModel, data: TaskData,
                 hardware: Hardware, logger: RunLogger, watch: Stopwatch, run_dir: Path,
                 dist: Distributed | None = None) -> tuple[list[StageResult], tuple[int, int]]:
    """(results of the stages trained or restored, (trainable, total) parameters of the last stage).
    With several processes every rank runs this; only rank 0 writes checkpoints and the cache."""
    dist = dist or Distributed()
    plans = method.stages(cfg.method, cfg.trainer.max_steps)
    loader = train_loader(loaded, task, data, cfg.trainer, pin_memory=hardware.device.type == "cuda", dist=dist)
    results: list[StageResult] = []
    params = count_parameters(loaded.model)
    start, mid = 0, None
    if cfg.get("resume"):
        start, mid, results, params = _restore(cfg, method, loaded, run_dir, dist.is_main)
        loaded.model.to(hardware.device)
    global_step = sum(plan.max_steps for plan in plans[:start])
    for index, plan in list(enumerate(plans))[start:]:
        resuming = mid is not None and mid.stage == index
        seed_everything(stage_seed(int(cfg.trainer.seed), index))
        sampler = resumable_sampler(loader)
        if sampler is not None:
            sampler.reseed(stage_seed(int(cfg.trainer.seed), index))
        cache_key = None if resuming else stage_cache_key(cfg, method, index, len(plans))
        entry = stage_cache.lookup(Path(cfg.stage_cache_dir), cache_key) if cache_key else None
        if entry is not None:
            # The stage's weights are the method's own save format: loading them reproduces the
            # model as it was after the stage; the next setup_stage builds on it.
            log.info("stage %s: reusing cached stage from %s", plan.name, entry)
            if dist.is_main:
                print(f"[{plan.name}] reusing cached stage {cache_key[:12]} ({entry})")
            method.load(loaded, cfg.method, entry)
            loaded.model.to(hardware.device)
            logger.log({"stage": plan.name, "stage/cache_hit": 1}, step=global_step)
            global_step += plan.max_steps
            if dist.is_main:  # the run dir stays resumable on its own: its stage end links the entry
                ckpt.save(run_dir, stage=index, step=plan.max_steps, global_step=global_step, stage_done=True,
                          keep=cfg.trainer.keep_checkpoints,
                          trainer_state={"results": [dataclasses.asdict(r) for r in results], "params": list(params)},
                          save_method=lambda directory, entry=entry: storage.link_tree(
                              entry, directory, exclude=frozenset({stage_cache.MARKER})))
            continue
        method.setup_stage(loaded, cfg.method, index)
        loaded.model.to(hardware.device)
        params = count_parameters(loaded.model)
        resume_at = None
        if resuming:
            ckpt.load_trainable(loaded.model, mid)
            resume_at = (mid.step, ckpt.trainer_state(mid, rank=dist.rank, world_size=dist.world_size))
            if dist.is_main:
                print(f"[{plan.name}] resuming at step {mid.step} from {mid.path}")
        if dist.is_main:
            log.info("stage %s: %d trainable of %d parameters", plan.name, *params)
            print(f"[{plan.name}] params/trainable={params[0]} params/total={params[1]}")

        def log_row(row: dict, offset: int = global_step) -> None:
            logger.log(row, step=offset + row["step_in_stage"])

        def save_mid(step: int, state: dict[str, Any], index: int = index, offset: int = global_step) -> None:
            state = {**state, "rng": dist.gather_objects(state["rng"])}  # each rank's own dropout stream
            if dist.is_main:
                ckpt.save(run_dir, stage=index, step=step, global_step=offset + step, stage_done=False,
                          trainable=trainable_state_dict(loaded.model), trainer_state=state,
                          keep=cfg.trainer.keep_checkpoints)

        layers = loaded.family.decoder_layers(loaded.model)
        with watch.section("train_loop_s"), compiled(layers, hardware.compile):
            result = run_stage(dist.prepare(loaded.model, list(layers)), loader, name=plan.name, lr=plan.lr,
                               max_steps=plan.max_steps, grad_accum=cfg.trainer.grad_accum,
                               weight_decay=cfg.trainer.weight_decay, warmup_ratio=cfg.trainer.warmup_ratio,
                               scheduler=cfg.trainer.scheduler, max_grad_norm=cfg.trainer.max_grad_norm,
                               hardware=hardware, log_every=cfg.trainer.log_every, log=log_row,
                               on_nonfinite=cfg.trainer.on_nonfinite, checkpoint_every=cfg.trainer.checkpoint_every,
                               checkpoint=save_mid, resume=resume_at, dist=dist, progress=dist.is_main,
                               on_first_step=lambda: watch.mark("first_step_s"))
        results.append(result)
        global_step += plan.max_steps
        if dist.shards_weights:  # FSDP: evaluation and saving need the whole model on every rank
            loaded.model = dist.gathered(loaded.model, loaded.family.load(model_config_for(cfg.model, method, warn=False))
                                         .model.to(hardware.device))
        digest = dist.check_in_sync([p for p in loaded.model.parameters() if p.requires_grad], plan.name)
        if digest and dist.is_main:
            print(f"[{plan.name}] {dist.world_size} ranks in sync (trainable sha256 {digest[:12]})")
        if not dist.is_main:
            continue
        # The stage's weights are written once, in the method's format; the stage cache (and the
        # run's weights/, commands/train.py) hard-link these files.
        end = ckpt.save(run_dir, stage=index, step=plan.max_steps, global_step=global_step, stage_done=True,
                        keep=cfg.trainer.keep_checkpoints, method_bytes=trainable_bytes(loaded.model),
                        trainer_state={"results": [dataclasses.asdict(r) for r in results], "params": list(params)},
                        save_method=lambda directory: method.save(loaded, directory))
        if cache_key:
            stage_cache.store(Path(cfg.stage_cache_dir), cache_key, end / ckpt.METHOD_DIR,
                              {"stage": plan.name, "method": cfg.method.label})
            logger.log({"stage": plan.name, "stage/cache_hit": 0}, step=global_step)
    return results, params


def _restore(cfg: DictConfig, method: Method, loaded: LoadedModel, run_dir: Path,
             is_main: bool = True) -> tuple[int, ckpt.Checkpoint | None, list[StageResult], tuple[int, int]]:
    """Rebuild the model as it was at the last checkpoint: (first stage to run, the mid-stage
    checkpoint to continue from or None, finished stages' results, parameter counts)."""
    last = ckpt.latest(run_dir)
    if last is None:
        print(f"resume: {run_dir} has no checkpoint yet; training from the start")
        return 0, None, [], count_parameters(loaded.model)
    finished = last if last.stage_done else (ckpt.stage_end(run_dir, last.stage - 1) if last.stage > 0 else None)
    results: list[StageResult] = []
    params = count_parameters(loaded.model)
    if finished is not None:
        method.load(loaded, cfg.method, finished.path / ckpt.METHOD_DIR)
        state = ckpt.trainer_state(finished)
        results = [StageResult(**r) for r in state["results"]]
        params = tuple(state["params"])
    if is_main:  # later rows are logged again, identically
        rundir.truncate_history(run_dir, last.global_step)
        print(f"resume: continuing {run_dir} from {last.path.name} (global step {last.global_step})")
    return (last.stage + 1, None, results, params) if last.stage_done else (last.stage, last, results, params)


# What determines a stage besides the method: the training data and schedule, not eval settings.
_DATA_KEYS = ("name", "instruction", "dataset", "train_split", "train_limit")
_SCHEDULE_KEYS = ("max_steps", "batch_size", "grad_accum", "warmup_ratio", "weight_decay", "max_grad_norm",
                  "scheduler")


def stage_cache_key(cfg: DictConfig, method: Method, index: int, n_stages: int) -> str | None:
    """Only non-final stages of multi-stage methods are cached (PT-PEFT's stage 1)."""
    if n_stages < 2 or index == n_stages - 1:
        return None
    task = OmegaConf.to_container(cfg.task, resolve=True)
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    data_id = {k: task[k] for k in _DATA_KEYS}
    schedule = {k: trainer[k] for k in _SCHEDULE_KEYS}
    schedule["precision"] = cfg.hardware.precision
    model_id = OmegaConf.to_container(cfg.model, resolve=True)
    return method.stage_fingerprint(model_id=str(model_id), data_id=str(data_id), cfg=cfg.method,
                                    seed=int(cfg.trainer.seed), schedule=schedule, stage=index)
