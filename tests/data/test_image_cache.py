"""Images processed once and cached: the cached tensors and the batches built from them equal
fresh processing exactly; the cache is reused; another processor config or image size
re-processes; a family without `image_inputs` keeps the per-batch PIL path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from ptpeft_cli.config import TaskConfig, TrainerConfig
from ptpeft_cli.models.base import LoadedModel, ModelFamily
from ptpeft_cli.models.tiny_llava import TinyLlavaFamily
from ptpeft_cli.tasks import get_task
from ptpeft_cli.tasks.base import Task, TaskData
from ptpeft_cli.training.batches import eval_loader, train_loader, with_cached_images

TRAINER = OmegaConf.structured(TrainerConfig(batch_size=4, eval_batch_size=3))


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return TinyLlavaFamily().load(OmegaConf.create({"name_or_path": None, "dtype": "auto", "max_length": 96}))


def small_task(root: Path, name: str = "vqa", image_size: int = 64) -> Task:
    """A few images (VQA: several questions per image, so rows share images)."""
    cfg = OmegaConf.structured(TaskConfig)
    cfg.name, cfg.meteor = name, False
    cfg.instruction = OmegaConf.load(Path("conf/task") / f"{name}.yaml").instruction
    cfg.dataset.root = str(root)
    for key, value in {"seed": 5, "n_pretrain": 0, "n_train": 6, "n_val": 2, "n_test": 4,
                       "image_size": image_size}.items():
        cfg.dataset[key] = value
    return get_task(cfg)


def fresh_pixels(loaded: LoadedModel, rows: Any) -> torch.Tensor:
    """What the processor makes of the rows' images, with text, as encode always called it."""
    images = [row["image"].convert("RGB") for row in rows]
    texts = [loaded.family.prompt("caption:")] * len(images)
    return loaded.processor(images=images, text=texts, return_tensors="pt")["pixel_values"]


def assert_same_batches(a: Any, b: Any) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]) if torch.is_tensor(x[key]) else x[key] == y[key], key


def test_cached_pixels_and_batches_equal_fresh_processing(tmp_path: Path, loaded: LoadedModel) -> None:
    task = small_task(tmp_path)
    data = task.load()
    cached = with_cached_images(loaded, data)
    assert cached.images is not None and "image" not in cached.train.column_names
    distinct = {row["image"].filename for split in (data.train, data.eval) for row in split}
    assert len(cached.images) == len(distinct) < len(data.train) + len(data.eval)
    assert list(data.source.cache_dir().glob(f"image-inputs-{cached.images.key}.arrow"))

    for plain, indexed in ((data.train, cached.train), (data.eval, cached.eval)):
        rows = [plain[i] for i in range(len(plain))]
        gathered = cached.images.gather([indexed[i]["image_index"] for i in range(len(indexed))])
        assert torch.equal(gathered["pixel_values"], fresh_pixels(loaded, rows))

    # Whole batches (ids, masks, labels, pixels) are identical with and without the cache.
    assert_same_batches(train_loader(loaded, task, data, TRAINER), train_loader(loaded, task, cached, TRAINER))
    assert_same_batches(eval_loader(loaded, task, data, TRAINER), eval_loader(loaded, task, cached, TRAINER))


def test_cache_is_reused_and_keyed_by_the_processor(tmp_path: Path, loaded: LoadedModel,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    task = small_task(tmp_path, name="captioning")
    data = task.load()
    calls: list[int] = []
    original = TinyLlavaFamily.image_inputs

    def counting(self: TinyLlavaFamily, loaded: LoadedModel, images: list) -> dict:
        calls.append(len(images))
        return original(self, loaded, images)

    monkeypatch.setattr(TinyLlavaFamily, "image_inputs", counting)
    first = with_cached_images(loaded, data)
    assert sum(calls) > 1  # probe + every image
    calls.clear()
    again = with_cached_images(loaded, task.load())
    assert calls == [1] and again.images.key == first.images.key  # only the probe: read back from the cache

    changed = copy.deepcopy(loaded)
    changed.processor.image_processor.image_mean = [0.5, 0.5, 0.5]
    other = with_cached_images(changed, task.load())
    assert other.images.key != first.images.key and sum(calls) > 1 + len(other.images)  # re-processed
    rows = [data.eval[i] for i in range(len(data.eval))]
    indices = [other.eval[i]["image_index"] for i in range(len(other.eval))]
    assert torch.equal(other.images.gather(indices)["pixel_values"], fresh_pixels(changed, rows))
    assert not torch.equal(other.images.gather(indices)["pixel_values"],
                           first.images.gather(indices)["pixel_values"])


def test_image_size_change_reprocesses(tmp_path: Path, loaded: LoadedModel) -> None:
    keys = []
    for size in (64, 48):
        task = small_task(tmp_path, name="captioning", image_size=size)
        data = task.load()
        cached = with_cached_images(loaded, data)
        rows = [data.eval[i] for i in range(len(data.eval))]
        assert rows[0]["image"].size == (size, size)
        indices = [cached.eval[i]["image_index"] for i in range(len(cached.eval))]
        assert torch.equal(cached.images.gather(indices)["pixel_values"], fresh_pixels(loaded, rows))
        keys.append(cached.images.key)
    assert keys[0] != keys[1]


class FourArgumentFamily(TinyLlavaFamily):
    """A family written against the contract before `image_inputs` existed."""

    image_inputs = ModelFamily.image_inputs  # the default: no caching

    def encode(self, loaded: LoadedModel, images: list, prompts: list[str],  # type: ignore[override]
               targets: list[str] | None = None) -> dict[str, torch.Tensor]:
        assert images and all(hasattr(image, "convert") for image in images)
        return super().encode(loaded, images, prompts, targets)


def test_family_without_image_inputs_keeps_the_pil_path(tmp_path: Path, loaded: LoadedModel) -> None:
    legacy = LoadedModel(loaded.model, loaded.processor, FourArgumentFamily(), dict(loaded.extras))
    task = small_task(tmp_path, name="captioning")
    data = task.load()
    assert with_cached_images(legacy, data) is data
    assert_same_batches(train_loader(legacy, task, data, TRAINER),
                        train_loader(loaded, task, with_cached_images(loaded, data), TRAINER))
    assert isinstance(data, TaskData) and data.images is None
