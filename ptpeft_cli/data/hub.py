"""`task.dataset.kind=hf`: a Hugging Face `datasets` dataset (from the Hub by name, or local
parquet / arrow / imagefolder files), mapped onto the official row shapes by a column mapping.

The rows it serves look exactly like the COCO Karpathy and VQAv2 loaders' rows, so tasks score it
the official way (pycocoevalcap on its reference captions, the VQAv2 accuracy on its ten answers).
Columns the mapping names but the dataset lacks are reported with the columns it has.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import datasets

from ptpeft_cli.data.sources import DataSource
from ptpeft_cli.errors import UserError


class HubDataset(DataSource):
    kind = "hf"
    formats = frozenset({"captions", "questions"})

    @functools.cached_property
    def options(self) -> Any:
        options = self.cfg.hf
        if not options.path:
            raise UserError("task.dataset.kind=hf needs task.dataset.hf.path (a hub dataset name, or parquet / "
                            "arrow / imagefolder with task.dataset.hf.data_files.<split>=FILE)")
        return options

    def column(self, name: str) -> str:
        return str(self.options.columns[name])

    def rows(self, split: str, limit: int | None) -> datasets.Dataset:
        """The split's first `limit` rows (streamed when task.dataset.hf.streaming=true)."""
        options = self.options
        if split not in options.splits:
            raise UserError(f"task.dataset.kind=hf: no split {split!r}; choose one of: {', '.join(options.splits)}")
        hub_split = str(options.splits[split])
        files = {str(options.splits[k]): str(v) for k, v in options.data_files.items() if v}
        if files and hub_split not in files:
            raise UserError(f"task.dataset.hf.data_files.{split} is not set (set: {', '.join(k for k, v in options.data_files.items() if v)})")
        data_files = files or None
        try:
            loaded = datasets.load_dataset(str(options.path), options.name, data_files=data_files, split=hub_split,
                                           streaming=bool(options.streaming))
        except Exception as error:  # noqa: BLE001 - the hub, builders and files raise many types here
            cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"cannot load task.dataset.hf.path={options.path} split {hub_split!r}: {cause}") from None
        if isinstance(loaded, datasets.IterableDataset):
            if limit is None:
                raise UserError("task.dataset.hf.streaming=true needs task.train_limit and task.eval_limit "
                                "(how many rows to stream)")
            loaded = datasets.Dataset.from_list(list(loaded.take(limit)), features=loaded.features)
        elif limit is not None:
            loaded = loaded.select(range(min(limit, len(loaded))))
        return loaded

    def _require(self, rows: datasets.Dataset, names: list[str]) -> None:
        missing = [f"{name} (column {self.column(name)!r})" for name in names if self.column(name) not in rows.column_names]
        if missing:
            raise UserError(f"task.dataset.hf.path={self.options.path} lacks {', '.join(missing)}; its columns: "
                            f"{', '.join(rows.column_names)} (map them with task.dataset.hf.columns.<name>=COLUMN)")

    def _ids(self, rows: datasets.Dataset, name: str) -> list[int]:
        column = self.column(name)
        return [int(v) for v in rows[column]] if column in rows.column_names else list(range(len(rows)))

    def captions(self, split: str, limit: int | None) -> datasets.Dataset:
        rows = self.rows(split, limit)
        self._require(rows, ["image", "captions"])
        captions = [[str(c)] if isinstance(c, str) else [str(x) for x in c] for c in rows[self.column("captions")]]
        return self._with_images(rows, {"image_id": self._ids(rows, "image_id"), "captions": captions},
                                 {"image_id": datasets.Value("int64"), "captions": datasets.List(datasets.Value("string"))})

    def questions(self, split: str, limit: int | None) -> datasets.Dataset:
        rows = self.rows(split, limit)
        self._require(rows, ["image", "question"])
        columns: dict[str, list[Any]] = {"question_id": self._ids(rows, "question_id"),
                                         "image_id": self._ids(rows, "image_id"),
                                         "question": [str(q) for q in rows[self.column("question")]]}
        features: dict[str, Any] = {"question_id": datasets.Value("int64"), "image_id": datasets.Value("int64"),
                                    "question": datasets.Value("string")}
        if self.column("answers") in rows.column_names:  # splits without answers are predicted, not scored
            answers = [[str(a["answer"]) if isinstance(a, dict) else str(a) for a in row]
                       for row in rows[self.column("answers")]]
            columns["answers"] = answers
            columns["multiple_choice_answer"] = self._or_default(
                rows, "multiple_choice_answer", [Counter(a).most_common(1)[0][0] for a in answers])
            columns["answer_type"] = self._or_default(rows, "answer_type", ["other"] * len(rows))
            columns["question_type"] = self._or_default(rows, "question_type", ["none"] * len(rows))
            features.update(answers=datasets.List(datasets.Value("string")),
                            multiple_choice_answer=datasets.Value("string"), answer_type=datasets.Value("string"),
                            question_type=datasets.Value("string"))
        return self._with_images(rows, columns, features)

    def _or_default(self, rows: datasets.Dataset, name: str, default: list[str]) -> list[str]:
        column = self.column(name)
        return [str(v) for v in rows[column]] if column in rows.column_names else default

    def _with_images(self, rows: datasets.Dataset, columns: dict[str, list[Any]],
                     features: dict[str, Any]) -> datasets.Dataset:
        """The mapped columns plus the dataset's own image column (decoded lazily, as datasets keeps it)."""
        images = rows.select_columns([self.column("image")]).rename_column(self.column("image"), "image") \
            if self.column("image") != "image" else rows.select_columns(["image"])
        if not isinstance(images.features["image"], datasets.Image):
            images = images.cast_column("image", datasets.Image())
        table = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
        return datasets.concatenate_datasets([table, images], axis=1)
