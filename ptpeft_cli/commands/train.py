"""`ptpeft train`: config -> task data + model -> method stages -> evaluation -> analysis -> run dir.

Read top to bottom, `run_training` is the whole experiment; everything it calls is a plain
function of a layer below.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ptpeft_cli import rundir
from ptpeft_cli.config_rules import apply_rates
from ptpeft_cli.errors import RunStopped, UserError
from ptpeft_cli.launch import export_slurm_environment, launched_rank
from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.base import freeze_all, model_config_for
from ptpeft_cli.models import get_family
from ptpeft_cli.tables import key_value_table
from ptpeft_cli.tasks import get_task
from ptpeft_cli.training.batches import (
    check_train_split,
    predict_task,
    teacher_forced_eval_batches,
    with_cached_images,
)
from ptpeft_cli.training.checkpoint import latest as latest_checkpoint
from ptpeft_cli.training.checkpoint import publish_weights
from ptpeft_cli.training.distributed import Distributed
from ptpeft_cli.training.hardware import hardware_from_config, seed_everything
from ptpeft_cli.training.retention import retention_metrics
from ptpeft_cli.training.run_logger import NullLogger, RunLogger
from ptpeft_cli.training.stages import train_stages
from ptpeft_cli.training.throughput import (
    device_peak_tflops,
    peak_memory,
    reset_peak_memory,
    throughput_metrics,
)
from ptpeft_cli.training.timing import Stopwatch

log = logging.getLogger("ptpeft")
SHARED_SUMMARY_KEYS = ("params/trainable", "params/total", "params/trainable_share", "rep/effective_rank",
                       "rep/effective_rank_ratio", "time/train_s", "time/total_s")


def train_entry(cfg: DictConfig) -> dict[str, Any] | None:
    """Hydra task function. A single run turns user mistakes into exit 2 and removes its run dir;
    a sweep job records the failure in `error.txt` and lets the other jobs go on."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    apply_rates(cfg, list(hydra_cfg.overrides.task))  # checked by the CLI before any dir existed
    export_slurm_environment()  # a SLURM job with one task per GPU is its own multi-process launch
    if launched_rank() != 0:  # other ranks of a multi-process job: rank 0 reports and writes
        return (_resume_job(cfg, run_dir) if cfg.get("resume_jobs") else None) or run_training(cfg, run_dir)
    try:
        metrics = (_resume_job(cfg, run_dir) if cfg.get("resume_jobs") else None) or run_training(cfg, run_dir)
    except UserError as error:
        if sweeping:
            _record_error(run_dir, f"{error}\n")
            log.error("job failed: %s", error)
            return None
        if not cfg.get("resume"):  # a resumed run dir holds earlier work: never delete it
            shutil.rmtree(run_dir, ignore_errors=True)
        print(f"ptpeft: error: {error}", file=sys.stderr)
        raise SystemExit(UserError.exit_code) from None
    except RunStopped as stopped:
        _record_error(run_dir, f"{stopped}\n")
        if sweeping:
            log.error("job stopped: %s", stopped)
            return None
        print(f"ptpeft: run stopped: {stopped}\nrun dir: {run_dir}", file=sys.stderr)
        raise SystemExit(RunStopped.exit_code) from None
    except Exception:
        _record_error(run_dir, traceback.format_exc())
        if not sweeping:
            raise
        log.exception("job failed")
        return None
    print(f"run dir: {run_dir}")
    return metrics


def _record_error(run_dir: Path, text: str) -> None:
    """error.txt; on a full disk even this can fail, which must not hide the error itself."""
    try:
        (run_dir / rundir.ERROR_FILE).write_text(text)
    except OSError as error:
        log.warning("could not write %s: %s", run_dir / rundir.ERROR_FILE, error)


def _resume_job(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """One job of a resumed sweep: its metrics if it had finished (kept as they are); otherwise
    None, with `cfg.resume` pointing at its own dir when it left a checkpoint to go on from."""
    if (run_dir / rundir.METRICS_FILE).is_file():
        print(f"kept finished job: {run_dir}")
        return rundir.read_metrics(run_dir)
    if launched_rank() == 0:  # the run dir is rank 0's to change
        (run_dir / rundir.ERROR_FILE).unlink(missing_ok=True)
    if latest_checkpoint(run_dir) is None:
        if launched_rank() == 0:
            rundir.truncate_history(run_dir, -1)  # rows of an attempt that saved nothing are redone
        return None
    differ = rundir.config_differences(rundir.read_config(run_dir), cfg)
    if differ:
        raise UserError(f"resume: job {run_dir.name} was run with another config ({', '.join(differ[:10])})")
    cfg.resume = str(run_dir)
    return None


def run_training(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train, evaluate and analyse one (model, method, task); write the run dir; return metrics."""
    started, watch = time.perf_counter(), Stopwatch()
    hardware = hardware_from_config(cfg.hardware)
    dist = Distributed.from_env(hardware.device, cfg.hardware.distributed, cfg.method.name,
                                  cfg.trainer.checkpoint_every)
    hardware = hardware.on(dist.device)
    reset_peak_memory(hardware.device)  # this run's peaks (memory/*), not an earlier run's in this process
    seed_everything(cfg.trainer.seed)
    method, task, family = get_method(cfg.method.name), get_task(cfg.task, cfg.model.instructions), get_family(cfg.model.family)
    method.validate(cfg.method)
    if dist.is_main:
        task.start_scorers()  # e.g. METEOR's JVM loads on the idle core while the data is prepared
    with watch.section("data_s"), dist.main_process_first():  # rank 0 writes the world; the rest read it
        data = task.load()
    n_stages = len(method.stages(cfg.method, cfg.trainer.max_steps))
    if n_stages:
        check_train_split(len(data.train), cfg.trainer, str(cfg.task.train_split))
    loaded = family.load(model_config_for(cfg.model, method))  # full: fp32 weights under model.dtype=auto
    freeze_all(loaded.model)  # a base model trains nothing until a method's stage says what
    loaded.model.to(hardware.device)
    if cfg.trainer.cache_images:
        with watch.section("data_s"), dist.main_process_first():
            data = with_cached_images(loaded, data)
    if dist.is_main:  # every file of the run dir is rank 0's
        rundir.write_config(run_dir, cfg)
    logger = RunLogger(run_dir, cfg, run_name=run_dir.name) if dist.is_main else NullLogger()
    try:
        base_features = batches = None
        if cfg.analysis.enabled and dist.is_main:
            from ptpeft_cli.analysis.runner import collect_run_features

            with watch.section("analysis_s"):
                batches = teacher_forced_eval_batches(loaded, task, data, cfg.trainer, hardware.device)
                base_features = collect_run_features(loaded, batches, cfg.analysis)

        # Re-seed so the analysis' forward passes never change what training draws (method inits,
        # dropout): a run trains identically with analysis on or off.
        seed_everything(cfg.trainer.seed)
        results, (trainable, total) = train_stages(cfg, method, task, loaded, data, hardware, logger, watch,
                                                   run_dir, dist)
        with watch.section("eval_s"):
            predictions = predict_task(loaded, task, data, cfg, hardware, dist)
        if not dist.is_main:  # scoring, retention, analysis and every write are rank 0's
            return {}
        publish_weights(run_dir, run_dir / rundir.WEIGHTS_DIR, n_stages, lambda out: method.save(loaded, out))
        with watch.section("score_s"):
            metrics: dict[str, Any] = task.evaluate(data, predictions)
        metrics.update({"params/trainable": trainable, "params/total": total, "params/trainable_share": trainable / total})
        if cfg.retention.enabled:
            with watch.section("retention_s"):
                metrics.update(retention_metrics(loaded, cfg, hardware))
        if base_features is not None:
            from ptpeft_cli.analysis.runner import analyze_run, collect_run_features

            with watch.section("analysis_s"):
                tuned = collect_run_features(loaded, batches, cfg.analysis)
                title = f"{cfg.model.family} / {cfg.method.label} / {task.name}"
                metrics.update(analyze_run(tuned, base_features, cfg.analysis, run_dir, title))
        for result in results:
            metrics[f"throughput/train_samples_per_s/{result.name}"] = result.samples_per_second
            metrics[f"train/final_loss/{result.name}"] = result.final_loss
        metrics["throughput/eval_examples_per_s"] = len(predictions) / max(watch.seconds["eval_s"], 1e-9)
        peak = device_peak_tflops(hardware.device)  # per GPU; samples, tokens and FLOPs count all ranks
        metrics.update(throughput_metrics(results, peak * dist.world_size if peak else None))
        metrics.update({f"memory/{key}": value for key, value in peak_memory(hardware.device).items()})
        metrics.update({f"time/{k}": v for k, v in watch.seconds.items()})
        metrics["time/train_s"] = sum(r.seconds for r in results)
        metrics["time/total_s"] = time.perf_counter() - started
        rundir.write_json_atomic(run_dir / rundir.PREDICTIONS_FILE, task.result_file(predictions))
        if metrics.get("eval/scored", 1) == 0:  # a server split: its answers are not public
            server_file = run_dir / task.server_file(data)
            rundir.write_json_atomic(server_file, task.result_file(predictions))
            print(f"eval split {data.eval_split!r} has no annotations: not scored; "
                  f"result file for the evaluation server: {server_file}")
        rundir.write_json_atomic(run_dir / rundir.METRICS_FILE, metrics)
        logger.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        logger.summary(metrics)
    finally:
        logger.finish()
        dist.wait()  # the other ranks exit with rank 0, not before its writes
    summary = [k for k in (*(key for key, _ in task.report_columns), *SHARED_SUMMARY_KEYS) if k in metrics]
    print("\n" + key_value_table(metrics, summary))
    return metrics
