"""DataLoaders for a (model family, task) pair: the task's words in the family's prompt format,
tokenised by the family's `encode`; and evaluation of a loaded model on a task's eval split."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Subset

from ptpeft_cli.data.collate import EncodeFn, GenerationCollator, TeacherForcingCollator
from ptpeft_cli.data.image_cache import build_image_store, image_paths, with_image_index
from ptpeft_cli.errors import UserError
from ptpeft_cli.evaluation.generation import predict
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.tasks.base import Task, TaskData
from ptpeft_cli.training.distributed import Distributed
from ptpeft_cli.training.loop import ResumableRandomSampler


def prompt_fn(loaded: LoadedModel, task: Task) -> Callable[[str | None], str]:
    return lambda question: loaded.family.prompt(task.instruction(question))


def encode_fn(loaded: LoadedModel) -> EncodeFn:
    """`image_inputs` reaches `family.encode` only when cached, i.e. only for families that
    implement `image_inputs`; the others keep their four-argument `encode`."""
    def encode(images: list[Any] | None, prompts: list[str], targets: list[str] | None,
               image_inputs: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        if image_inputs is None:
            return loaded.family.encode(loaded, images, prompts, targets)
        return loaded.family.encode(loaded, images, prompts, targets, image_inputs=image_inputs)

    return encode


def with_cached_images(loaded: LoadedModel, data: TaskData) -> TaskData:
    """The task's rows pointing at images processed once by the family (`image_inputs`) and
    cached on disk (data/image_cache.py). Unchanged when the family does not cache or the
    images have no files."""
    train_paths, eval_paths = image_paths(data.train), image_paths(data.eval)
    if data.images is not None or train_paths is None or eval_paths is None:
        return data
    family = loaded.family
    store = build_image_store(train_paths + eval_paths, lambda images: family.image_inputs(loaded, images),
                              family.image_inputs_fingerprint(loaded), data.source.cache_dir())
    if store is None:
        return data
    return dataclasses.replace(data, train=with_image_index(data.train, store),
                               eval=with_image_index(data.eval, store), images=store)


def check_train_split(size: int, trainer: Any, split: str) -> None:
    """Refuse, before anything is written, a train split smaller than one batch: batches are whole
    (`drop_last`), so it gives none and training could never take a step. Whole batches are kept
    rather than training on a short one: every step then has the configured batch size (the
    gradient scale the learning rate was chosen for, and the same split over any number of
    processes), and the data order of existing runs and PT-PEFT's stage-cache key stay as they were."""
    batch = int(trainer.batch_size)
    if size >= batch:
        return
    fix = f"lower trainer.batch_size to at most {size}" if size else "point the task at a split with examples"
    raise UserError(f"the train split {split!r} has {size} example(s), fewer than one batch "
                    f"(trainer.batch_size={batch}, the global batch of all processes): {fix} "
                    "or train on more examples (task.train_limit)")


def train_loader(loaded: LoadedModel, task: Task, data: TaskData, trainer: Any, pin_memory: bool = False,
                 dist: Distributed | None = None) -> DataLoader:
    """Shuffled from a generator seeded by `trainer.seed`, so the data order repeats exactly (and a
    checkpoint can record and restore the position: ResumableRandomSampler). `pin_memory` for
    CUDA (asynchronous copies with `non_blocking`). With several processes every rank draws the
    same order and loads only its slice of each `trainer.batch_size` batch."""
    generator = torch.Generator().manual_seed(int(trainer.seed))
    sampler = ResumableRandomSampler(len(data.train), generator)
    collate = TeacherForcingCollator(encode_fn(loaded), prompt_fn(loaded, task), data.images)
    if dist is None or dist.world_size == 1:
        return DataLoader(data.train, batch_size=trainer.batch_size, sampler=sampler, drop_last=True,
                          generator=generator, num_workers=trainer.num_workers, pin_memory=pin_memory,
                          collate_fn=collate)
    from accelerate.data_loader import BatchSamplerShard

    if trainer.batch_size % dist.world_size:
        raise UserError(f"trainer.batch_size={trainer.batch_size} cannot be split over {dist.world_size} "
                        "processes; use a multiple of the number of processes (it is the global batch)")
    shard = BatchSamplerShard(BatchSampler(sampler, trainer.batch_size, drop_last=True), dist.world_size,
                              dist.rank, split_batches=True)
    loader = DataLoader(data.train, batch_sampler=shard, generator=generator, num_workers=trainer.num_workers,
                        pin_memory=pin_memory, collate_fn=collate)
    loader.global_batch_size = trainer.batch_size  # what a checkpoint's data position counts in
    return loader


def eval_loader(loaded: LoadedModel, task: Task, data: TaskData, trainer: Any, pin_memory: bool = False,
                dist: Distributed | None = None) -> DataLoader:
    """The eval split in order; with several processes, this rank's share of its batches."""
    shard = dist.shard_batches(len(data.eval), trainer.eval_batch_size) if dist else None
    rows = data.eval if shard is None else Subset(data.eval, shard)
    return DataLoader(rows, batch_size=trainer.eval_batch_size, shuffle=False,
                      num_workers=trainer.num_workers, pin_memory=pin_memory,
                      collate_fn=GenerationCollator(encode_fn(loaded), prompt_fn(loaded, task), data.images))


def teacher_forced_eval_batches(loaded: LoadedModel, task: Task, data: TaskData, trainer: Any,
                                device: torch.device) -> list[dict[str, torch.Tensor]]:
    """The eval split with its teacher-forcing targets, built once so that the base and the tuned
    model of the representation analysis see identical rows."""
    loader = DataLoader(data.eval, batch_size=trainer.eval_batch_size, shuffle=False,
                        collate_fn=TeacherForcingCollator(encode_fn(loaded), prompt_fn(loaded, task), data.images))
    return [{k: v.to(device) for k, v in batch.items()} for batch in loader]


def predict_task(loaded: LoadedModel, task: Task, data: TaskData, cfg: Any, hardware: Any,
                 dist: Distributed | None = None) -> dict[int, str]:
    """example_id -> generated text on the task's eval split, with the run's generation options.
    With several processes each generates its share and every rank gets all predictions."""
    loader = eval_loader(loaded, task, data, cfg.trainer, pin_memory=hardware.device.type == "cuda", dist=dist)
    mine = predict(loaded, loader, cfg.task.max_new_tokens, cfg.task.num_beams, hardware.device, hardware.autocast)
    if dist is None or dist.world_size == 1:
        return mine
    # Batches were dealt round-robin (Distributed.shard_batches): dealing them back restores the
    # single-process order.
    size = cfg.trainer.eval_batch_size
    batches = [[items[i:i + size] for i in range(0, len(items), size)]
               for items in (list(part.items()) for part in dist.gather_objects(mine))]
    return dict(item for turn in itertools.zip_longest(*batches, fillvalue=[]) for batch in turn for item in batch)


def evaluate_on_task(loaded: LoadedModel, task: Task, data: TaskData, cfg: Any,
                     hardware: Any) -> tuple[dict[int, str], dict[str, float]]:
    """(predictions, `eval/*` metrics) of a loaded model on a task's eval split, as a run makes them."""
    predictions = predict_task(loaded, task, data, cfg, hardware)
    return predictions, task.evaluate(data, predictions)
