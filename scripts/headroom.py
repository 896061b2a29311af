"""Headroom of the synthetic VQA task: how well does the shipped tiny LMM answer zero-shot?

The default `task=vqa` data (compositional kinds, synthetic/questions.py) is meant to need
fine-tuning, while the `pretrain_kinds` file (the kinds the model was pre-trained on) is the
retention probe it should already answer. This script scores, with the official VQA accuracy:

- the shipped model zero-shot (the prompts of synthetic/probe.py) on both files;
- a blind prior: each kind's most frequent train answer, whatever the image (what a model that
  learnt only the answer distribution would get; fine-tuning gains above it need the image);
- optionally `--predictions run_dir/predictions.json` of a fine-tuned run, per kind.

Overall and per question kind. The world is the one `ptpeft train task=vqa` uses by default
(`task.dataset` defaults; `--root` as `task.dataset.root`). Target: zero-shot <= 55 on the
compositional kinds, best fine-tuned >= zero-shot + 15.

    PYTHONPATH=. python scripts/headroom.py [--root data] [--split test] [--predictions P]
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

from ptpeft_cli.config import DatasetConfig
from ptpeft_cli.evaluation.vqa_accuracy import vqa_scores
from ptpeft_cli.models.tiny_llava import TinyLlavaFamily
from ptpeft_cli.synthetic import probe
from ptpeft_cli.synthetic.questions import question_kind
from ptpeft_cli.synthetic.text import VQA_PROMPT
from ptpeft_cli.synthetic.writer import VQA_KINDS, WorldPaths, WorldSpec, ensure_world


def _world(root: str) -> WorldPaths:
    defaults = DatasetConfig()
    spec = WorldSpec(seed=defaults.seed, image_size=defaults.image_size,
                     n_pretrain=defaults.n_pretrain, n_train=defaults.n_train,
                     n_val=defaults.n_val, n_test=defaults.n_test)
    return ensure_world(Path(root), spec, workers=1)


def _read(paths: WorldPaths, split: str, kind: str) -> tuple[list[dict], list[dict]]:
    questions = json.loads(paths.vqa_questions(split, kind).read_text())["questions"]
    annotations = json.loads(paths.vqa_annotations(split, kind).read_text())["annotations"]
    return questions, annotations


def _kind(question: dict[str, Any], annotation: dict[str, Any]) -> str:
    return question_kind(question["question"]) or probe.question_kind(
        annotation["question_type"], annotation["answer_type"])


def score(predictions: dict[int, str], questions: list[dict], annotations: list[dict]) -> dict:
    """Official accuracy overall, per answer type and per question kind (0-100)."""
    scores = vqa_scores(predictions, annotations, questions)
    by_id = {q["question_id"]: q for q in questions}
    per_kind: dict[str, list[float]] = {}
    for annotation in annotations:
        kind = _kind(by_id[annotation["question_id"]], annotation)
        per_kind.setdefault(kind, []).append(scores["perQuestion"][annotation["question_id"]])
    return {
        "overall": scores["overall"],
        "per_answer_type": scores["perAnswerType"],
        "per_kind": {k: round(float(np.mean(v)), 2) for k, v in sorted(per_kind.items())},
        "n_per_kind": {k: len(v) for k, v in sorted(per_kind.items())},
        "n_questions": len(questions),
    }


def zero_shot(paths: WorldPaths, split: str, questions: list[dict],
              batch_size: int) -> dict[int, str]:
    """Greedy answers of the shipped model with the pre-training VQA prompt."""
    family = TinyLlavaFamily()
    model_cfg = {"name_or_path": None, "dtype": "fp32", "max_length": 96}
    loaded = family.load(OmegaConf.create(model_cfg))
    images: dict[int, Image.Image] = {}
    for image_id in {q["image_id"] for q in questions}:
        images[image_id] = Image.open(paths.image_file(split, image_id)).convert("RGB")
    prompts = [family.prompt(VQA_PROMPT.format(question=q["question"])) for q in questions]
    answers: list[str] = []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start:start + batch_size]
        batch = family.encode(loaded, [images[q["image_id"]] for q in chunk],
                              prompts[start:start + batch_size])
        answers += family.generate(loaded, batch, max_new_tokens=4)
    return {q["question_id"]: a for q, a in zip(questions, answers, strict=True)}


def blind_prior(paths: WorldPaths, kind: str, questions: list[dict],
                annotations: list[dict]) -> dict[int, str]:
    """Each kind's most frequent majority answer on the train split, ignoring the image."""
    train_q, train_a = _read(paths, "train", kind)
    train_by_id = {q["question_id"]: q for q in train_q}
    counts: dict[str, Counter] = {}
    for a in train_a:
        kind_of_a = _kind(train_by_id[a["question_id"]], a)
        counts.setdefault(kind_of_a, Counter())[a["multiple_choice_answer"]] += 1
    by_id = {a["question_id"]: a for a in annotations}
    return {q["question_id"]: counts[_kind(q, by_id[q["question_id"]])].most_common(1)[0][0]
            for q in questions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.environ.get("PTPEFT_DATA", "data"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--predictions", type=Path,
                        help="a run's predictions.json, scored per kind")
    parser.add_argument("--out", type=Path, default=Path("outputs/headroom.json"))
    args = parser.parse_args()
    paths = _world(args.root)
    report: dict[str, Any] = {"world": str(paths.root), "split": args.split}
    for kind in VQA_KINDS:
        questions, annotations = _read(paths, args.split, kind)
        report[kind] = {
            "zero_shot": score(zero_shot(paths, args.split, questions, args.batch_size),
                               questions, annotations),
            "blind_prior": score(blind_prior(paths, kind, questions, annotations),
                                 questions, annotations),
        }
    if args.predictions:
        questions, annotations = _read(paths, args.split, "compositional")
        rows = json.loads(args.predictions.read_text())
        predictions = {int(r["question_id"]): str(r["answer"]) for r in rows}
        report["compositional"]["predictions"] = {"file": str(args.predictions),
                                                  **score(predictions, questions, annotations)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
