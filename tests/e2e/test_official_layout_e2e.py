"""`ptpeft train` on the official COCO / Karpathy / VQAv2 layout, as a user points at it: one root
key, a few steps, scored; a server split (test-dev) writes the server's result file; anything
missing stops the run before training, in one line, with exit 2 and no run dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from official_tree import OfficialTree, write_official_tree

from ptpeft_cli.commands import train as train_command

from .conftest import run_cli, run_dir_of

FEW_STEPS = ["method=lora", "trainer.max_steps=2", "trainer.batch_size=4", "trainer.eval_batch_size=8",
             "logger=none", "analysis.enabled=false", "task.meteor=false", "hardware=cpu"]


def _captioning(tree: OfficialTree) -> list[str]:
    return ["train", "task=captioning", "task.dataset.kind=coco_karpathy", f"task.dataset.root={tree.coco}"]


def _vqa(tree: OfficialTree) -> list[str]:
    return ["train", "task=vqa", "task.dataset.kind=vqav2", f"task.dataset.root={tree.vqa}",
            f"task.dataset.image_root={tree.coco}"]


def _train(args: list[str], workdir: Path, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture) -> tuple[Path, dict, str]:
    out, _ = run_cli([*args, *FEW_STEPS], workdir, monkeypatch, capsys)
    run_dir = run_dir_of(out)
    run_dir = run_dir if run_dir.is_absolute() else workdir / run_dir
    return run_dir, json.loads((run_dir / "metrics.json").read_text()), out


@pytest.mark.slow
def test_captioning_on_the_karpathy_layout_trains_and_scores(official_tree: OfficialTree, workdir: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    run_dir, metrics, _ = _train(_captioning(official_tree), workdir, monkeypatch, capsys)
    assert {"eval/CIDEr", "eval/Bleu_4", "eval/ROUGE_L"} <= set(metrics) and "eval/scored" not in metrics
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert [p["image_id"] for p in predictions] == sorted(official_tree.karpathy_ids("test"))


@pytest.mark.slow
def test_vqa_on_the_vqav2_layout_trains_on_train_and_scores_val(official_tree: OfficialTree, workdir: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    run_dir, metrics, _ = _train(_vqa(official_tree), workdir, monkeypatch, capsys)
    assert "eval/vqa_accuracy" in metrics and "eval/vqa_accuracy/yes/no" in metrics
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert [p["question_id"] for p in predictions] == sorted(official_tree.question_ids("val2014"))


@pytest.mark.slow
def test_test_dev_writes_the_server_result_file_instead_of_scoring(official_tree: OfficialTree, workdir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    run_dir, metrics, out = _train([*_vqa(official_tree), "task.eval_split=test-dev"], workdir, monkeypatch, capsys)
    assert metrics["eval/scored"] == 0 and "eval/vqa_accuracy" not in metrics
    server_file = run_dir / "vqa_OpenEnded_mscoco_test-dev2015_ptpeft_results.json"
    results = json.loads(server_file.read_text())
    assert [r["question_id"] for r in results] == sorted(official_tree.question_ids("test-dev2015"))
    assert all(set(r) == {"question_id", "answer"} and isinstance(r["answer"], str) for r in results)
    assert f"result file for the evaluation server: {server_file}" in out


@pytest.mark.parametrize("task", ["captioning", "vqa"])
def test_a_missing_image_stops_the_run_before_training(task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    tree = write_official_tree(tmp_path / "data")
    missing = tree.image("val2014", tree.karpathy_ids("test")[-1])
    missing.unlink()

    def must_not_train(*args: object, **kwargs: object) -> None:
        raise AssertionError("training started despite missing data")

    monkeypatch.setattr(train_command, "train_stages", must_not_train)
    args = _captioning(tree) if task == "captioning" else _vqa(tree)
    with pytest.raises(SystemExit) as exit_info:
        run_cli([*args, *FEW_STEPS], tmp_path, monkeypatch, capsys)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"ptpeft: error: image not found: {missing} (")
    assert err.endswith(f"fetch it with: python scripts/fetch_data.py coco --root {tree.coco}")
    runs = tmp_path / "outputs" / "train"
    assert not runs.exists() or not any(runs.iterdir()), "a stopped run must leave no run dir"


def test_a_missing_file_stops_the_run_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    tree = write_official_tree(tmp_path / "data")
    tree.annotations("val2014").unlink()
    with pytest.raises(SystemExit) as exit_info:
        run_cli([*_vqa(tree), *FEW_STEPS], tmp_path, monkeypatch, capsys)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ptpeft: error: VQAv2 val annotations file not found: {tree.annotations('val2014')} "
                   f"(from task.dataset.root={tree.vqa}); fetch it with: python scripts/fetch_data.py vqav2 "
                   f"--root {tree.vqa}")
    runs = tmp_path / "outputs" / "train"
    assert not runs.exists() or not any(runs.iterdir())
