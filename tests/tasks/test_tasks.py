"""Tasks: the synthetic world and a "real" dataset config read the same official files the same
way (the real path is exercised on the synthetic world's official-format files); references,
scores and result files come from the task."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from small_world_spec import SMALL_SPEC

from ptpeft_cli.config import SplitFiles, TaskConfig
from ptpeft_cli.errors import UserError
from ptpeft_cli.evaluation.captioning import caption_scores_from_files
from ptpeft_cli.evaluation.score import score_vqa_files
from ptpeft_cli.synthetic.writer import WorldPaths
from ptpeft_cli.tasks import TASKS, get_task


def _task_cfg(name: str, root: Path, **dataset: object) -> object:
    cfg = OmegaConf.structured(TaskConfig)
    cfg.name = name
    cfg.instruction = OmegaConf.load(Path("conf/task") / f"{name}.yaml").instruction
    cfg.meteor = False
    cfg.dataset.root = str(root)
    for key, value in {"seed": SMALL_SPEC.seed, "n_pretrain": SMALL_SPEC.n_pretrain, "n_train": SMALL_SPEC.n_train,
                       "n_val": SMALL_SPEC.n_val, "n_test": SMALL_SPEC.n_test, **dataset}.items():
        cfg.dataset[key] = value
    return cfg


def test_registry_lists_the_shipped_tasks() -> None:
    assert set(TASKS.names()) >= {"captioning", "vqa"}
    with pytest.raises(UserError, match="task.name='ocr' is not allowed; choose one of: captioning, vqa"):
        TASKS.get("ocr")


def test_captioning_rows_references_and_official_scores(small_world: WorldPaths, tmp_path: Path) -> None:
    task = get_task(_task_cfg("captioning", small_world.root.parent))
    data = task.load()
    assert len(data.train) == 5 * SMALL_SPEC.n_train  # one row per reference caption
    assert set(data.train.column_names) >= {"image", "question", "target"}
    assert data.eval["example_id"] == list(SMALL_SPEC.image_ids("test"))
    # Scoring from the eval rows equals the official tool on the official annotation file.
    predictions = {i: caption[0] for i, caption in zip(data.eval["example_id"], data.eval["captions"], strict=True)}
    predictions[data.eval["example_id"][0]] = data.eval["captions"][1][0]  # another image's caption
    metrics = task.score(data, predictions)
    results = tmp_path / "results.json"
    import json

    results.write_text(json.dumps(task.result_file(predictions)))
    official = caption_scores_from_files(results, small_world.caption_annotations("test"), meteor=False)
    assert metrics["eval/CIDEr"] == pytest.approx(official["CIDEr"])
    assert 0 < metrics["eval/object_precision"] < 1  # grounded in the synthetic scenes


def test_instruction_comes_from_the_task_unless_the_model_overrides_it(small_world: WorldPaths) -> None:
    cfg = _task_cfg("vqa", small_world.root.parent)
    assert get_task(cfg).instruction("what is it?") == "question: what is it? answer:"
    override = {"vqa": "Question: {question} Short answer:"}
    assert get_task(cfg, override).instruction("what is it?") == "Question: what is it? Short answer:"
    captioning = _task_cfg("captioning", small_world.root.parent)
    assert get_task(captioning, {"captioning": ""}).instruction(None) == ""  # GIT's empty prompt


def test_synthetic_instructions_match_the_pretraining_corpus() -> None:
    """The shipped model answers zero-shot only if the tasks ask in the words it learned."""
    from ptpeft_cli.synthetic.text import CAPTION_PROMPT, VQA_PROMPT

    assert OmegaConf.load("conf/task/captioning.yaml").instruction == CAPTION_PROMPT
    assert OmegaConf.load("conf/task/vqa.yaml").instruction == VQA_PROMPT


def test_real_vqa_config_reads_the_same_rows_and_scores_like_the_official_files(
        small_world: WorldPaths, tmp_path: Path) -> None:
    """Every file of every split set by its own plain key (no templates), on a non-COCO layout."""
    synthetic = get_task(_task_cfg("vqa", small_world.root.parent))
    files = {split: SplitFiles(questions=str(small_world.vqa_questions(split)),
                               annotations=str(small_world.vqa_annotations(split)), images=str(small_world.images))
             for split in ("train", "test")}
    real_cfg = _task_cfg("vqa", small_world.root.parent, kind="vqav2", files=files,
                         image_pattern="synth_{split}_{image_id:012d}.png")
    real_cfg.eval_split = "test"
    real = get_task(real_cfg)
    synthetic_data, real_data = synthetic.load(), real.load()
    assert real_data.eval["example_id"] == synthetic_data.eval["example_id"]
    assert real_data.train["target"] == synthetic_data.train["target"]
    predictions = {qid: "2" if k % 2 else "yes" for k, qid in enumerate(real_data.eval["example_id"])}
    results = tmp_path / "results.json"
    import json

    results.write_text(json.dumps(real.result_file(predictions)))
    official = score_vqa_files(results, small_world.vqa_annotations("test"), small_world.vqa_questions("test"))
    assert real.score(real_data, predictions)["eval/vqa_accuracy"] == official["overall"]


def test_real_dataset_missing_file_is_a_user_error(tmp_path: Path) -> None:
    """The all-splits keys still fill in `{split}` (set from Python, where no Hydra grammar applies)."""
    task = get_task(_task_cfg("vqa", tmp_path, kind="vqav2", questions=str(tmp_path / "q_{split}.json"),
                              annotations=str(tmp_path / "a.json"), image_root=str(tmp_path)))
    with pytest.raises(UserError, match=r"VQAv2 val questions file not found: .*q_val.json \(from task.dataset.questions="):
        task.load()


def test_task_with_a_dataset_of_the_wrong_shape_is_a_user_error(tmp_path: Path) -> None:
    task = get_task(_task_cfg("captioning", tmp_path, kind="vqav2"))
    with pytest.raises(UserError, match="task=captioning needs a dataset with captions; task.dataset.kind=vqav2 provides questions"):
        task.load()
