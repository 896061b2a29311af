"""`task.dataset.kind=hf`: a local parquet dataset (the same path as a Hub dataset) trains and
scores through the CLI, its references are its own columns, and a missing column is one line."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from PIL import Image

from ptpeft_cli.cli import main

SHORT = ["trainer.max_steps=2", "trainer.batch_size=4", "trainer.eval_batch_size=8", "logger=none", "task.meteor=false",
         "analysis.enabled=false", "retention.enabled=false", "hardware=cpu"]
COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 180, 30)}


def _parquet(directory: Path, split: str, n: int) -> Path:
    """A small captioning + VQA dataset in the shape hub datasets use (image bytes, answer dicts)."""
    names = list(COLOURS)
    rows = {"img": [], "sentences": [], "qid": [], "question": [], "answers": []}
    for i in range(n):
        colour = names[i % len(names)]
        path = directory / f"{split}_{i}.png"
        Image.new("RGB", (64, 64), COLOURS[colour]).save(path)
        rows["img"].append(str(path))
        rows["sentences"].append([f"a {colour} square", f"the image is {colour}"])
        rows["qid"].append(1000 + i)
        rows["question"].append("what color is the square?")
        rows["answers"].append([{"answer": colour, "answer_id": k + 1} for k in range(10)])
    features = datasets.Features({"img": datasets.Image(), "sentences": datasets.List(datasets.Value("string")),
                                  "qid": datasets.Value("int64"), "question": datasets.Value("string"),
                                  "answers": datasets.List({"answer": datasets.Value("string"),
                                                            "answer_id": datasets.Value("int64")})})
    dataset = datasets.Dataset.from_dict(rows, features=features).cast_column("img", datasets.Image(decode=True))
    target = directory / f"{split}.parquet"
    dataset.map(lambda row: row, features=features).to_parquet(str(target))  # embeds the image bytes
    return target


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("hub")
    return {split: _parquet(directory, split, n) for split, n in (("train", 8), ("val", 6))}


def _hf_args(parquet: dict[str, Path]) -> list[str]:
    return ["task.dataset.kind=hf", "task.dataset.hf.path=parquet", f"task.dataset.hf.data_files.train={parquet['train']}",
            f"task.dataset.hf.data_files.val={parquet['val']}", "task.eval_split=val",
            "task.dataset.hf.columns.image=img", "task.dataset.hf.columns.question_id=qid"]


@pytest.mark.parametrize("task,metric", [("captioning", "eval/CIDEr"), ("vqa", "eval/vqa_accuracy")])
def test_local_parquet_trains_and_scores(task: str, metric: str, parquet: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    columns = ["task.dataset.hf.columns.captions=sentences"] if task == "captioning" else []
    main(["train", f"task={task}", "method=lora", *_hf_args(parquet), *columns, *SHORT])
    out = capsys.readouterr().out
    run_dir = tmp_path / out.strip().splitlines()[-1].removeprefix("run dir: ")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert metric in metrics and len(predictions) == 6
    if task == "vqa":  # question ids come from the mapped column
        assert sorted(p["question_id"] for p in predictions) == list(range(1000, 1006))


def test_hub_rows_have_the_official_shape(parquet: dict[str, Path]) -> None:
    from omegaconf import OmegaConf

    from ptpeft_cli.config import DatasetConfig
    from ptpeft_cli.data.hub import HubDataset

    cfg = OmegaConf.structured(DatasetConfig)
    cfg.kind, cfg.hf.path = "hf", "parquet"
    cfg.hf.data_files.train = str(parquet["train"])
    cfg.hf.columns.image, cfg.hf.columns.captions, cfg.hf.columns.question_id = "img", "sentences", "qid"
    source = HubDataset(cfg)
    captions = source.captions("train", limit=3)
    assert captions["captions"] == [["a red square", "the image is red"], ["a blue square", "the image is blue"],
                                    ["a green square", "the image is green"]]
    assert captions[0]["image"].size == (64, 64)
    questions = source.questions("train", limit=None)
    assert questions[1]["multiple_choice_answer"] == "blue" and len(questions[1]["answers"]) == 10
    assert set(questions.column_names) >= {"question_id", "image_id", "question", "image", "answer_type", "question_type"}


def test_missing_column_is_one_line_naming_the_columns(parquet: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "task=captioning", *_hf_args(parquet), *SHORT])  # no captions mapping: 'captions' is absent
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2
    assert "lacks captions (column 'captions'); its columns: img, sentences, qid, question, answers" in err
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").glob("*/*"))
