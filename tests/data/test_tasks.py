"""`load_task_data`: the synthetic world and a "real" dataset config read the same official files
the same way (the real path is exercised on the synthetic world's official-format files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from small_world_spec import SMALL_SPEC

from ptpeft_cli.config import TaskConfig
from ptpeft_cli.data.tasks import eval_references, load_task_data
from ptpeft_cli.errors import UserError
from ptpeft_cli.synthetic.writer import WorldPaths


def _task(name: str, root: Path, **dataset: object) -> object:
    cfg = OmegaConf.structured(TaskConfig)
    cfg.name = name
    cfg.dataset.root = str(root)
    for key, value in {"seed": SMALL_SPEC.seed, "n_pretrain": SMALL_SPEC.n_pretrain, "n_train": SMALL_SPEC.n_train,
                       "n_val": SMALL_SPEC.n_val, "n_test": SMALL_SPEC.n_test, **dataset}.items():
        cfg.dataset[key] = value
    return cfg


def test_captioning_rows_and_references(small_world: WorldPaths) -> None:
    data = load_task_data(_task("captioning", small_world.root.parent))
    assert len(data.train) == 5 * SMALL_SPEC.n_train  # one row per reference caption
    assert set(data.train.column_names) >= {"image", "question", "target"}
    refs = eval_references(data)
    assert set(refs) == set(data.eval["example_id"]) and all(len(r) == 5 for r in refs.values())
    assert data.scenes is not None


def test_real_vqa_config_reads_the_same_rows_as_synthetic(small_world: WorldPaths) -> None:
    synthetic = load_task_data(_task("vqa", small_world.root.parent))
    vqa_dir = small_world.root / "vqa"
    real = load_task_data(_task(
        "vqa", small_world.root.parent, kind="vqav2",
        questions=str(vqa_dir / "v2_OpenEnded_mscoco_{split}_questions.json"),
        annotations=str(vqa_dir / "v2_mscoco_{split}_annotations.json"),
        image_root=str(small_world.root), image_pattern="images/synth_{split}_{image_id:012d}.png"))
    assert real.eval["example_id"] == synthetic.eval["example_id"]
    assert real.train["target"] == synthetic.train["target"]
    assert real.scenes is None  # grounding needs the synthetic scenes


def test_real_dataset_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="task.dataset.questions=.*does not exist"):
        load_task_data(_task("vqa", tmp_path, kind="vqav2", questions=str(tmp_path / "q_{split}.json"),
                             annotations=str(tmp_path / "a.json"), image_root=str(tmp_path)))
